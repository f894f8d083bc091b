"""The ``pixelcnn`` command: one Typer app, one module per subcommand."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from .common import PlainErrorsGroup
from .evaluate import eval_command
from .inspect_masks import inspect_masks
from .plugins import plugins
from .sample import sample
from .train import train

app = typer.Typer(
    cls=PlainErrorsGroup,
    help="Gated PixelCNN: train, sample, evaluate and inspect autoregressive image models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: option help may contain [default: ...]
    add_completion=False,
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
    """Gated PixelCNN: train, sample, evaluate and inspect autoregressive image models."""


app.command("train")(train)
app.command("sample")(sample)
app.command("eval")(eval_command)
app.command("inspect-masks")(inspect_masks)
app.command("plugins")(plugins)


def main() -> None:
    app()
