"""The ``pixelcnn`` command: one Typer app, one module per subcommand."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from .common import HelpCommand, PlainErrorsGroup
from .evaluate import eval_command
from .inspect_masks import inspect_masks
from .plugins import plugins
from .runs import plot, runs
from .sample import sample
from .score import score
from .train import train

app = typer.Typer(
    cls=PlainErrorsGroup,
    help="PixelCNN models (Gated PixelCNN, PixelCNN++): train, sample, evaluate, score and inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help strings are plain text; common.HelpCommand draws them with Rich on a terminal
    add_completion=True,  # --install-completion: quick, since no command imports torch before it runs
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pixelcnn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit")] = False,
) -> None:
    """PixelCNN models (Gated PixelCNN, PixelCNN++): train, sample, evaluate, score and inspect."""


app.command("train", cls=HelpCommand)(train)
app.command("sample", cls=HelpCommand)(sample)
app.command("eval", cls=HelpCommand)(eval_command)
app.command("score", cls=HelpCommand)(score)
app.command("inspect-masks", cls=HelpCommand)(inspect_masks)
app.command("runs", cls=HelpCommand)(runs)
app.command("plot", cls=HelpCommand)(plot)
app.command("plugins", cls=HelpCommand)(plugins)


def main() -> None:
    app(prog_name="pixelcnn")  # also under `python -m pixelcnn_cli`: completion is keyed to this name
