"""What every command shares: the consoles, error rendering, option parsing helpers."""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from typing import Any, Callable, Iterator

import typer
import yaml
from pydantic import BaseModel
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from ..errors import ConfigError, PixelCNNError

# Results go to stdout; progress, notices and errors to stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def refresh_consoles() -> None:
    """Rebind the consoles to the current streams (the test runner swaps them per call)."""
    global out, err
    out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    err = Console(file=sys.stderr, highlight=False, soft_wrap=True)


def print_whole(renderable) -> None:
    """Print on stdout; off a terminal (a pipe, a log) as wide as ``renderable`` needs, so a table's
    cells stay whole (rich would squeeze it into 80 columns with ellipses and `grep` would miss them)."""
    if not out.is_terminal:
        needed = out.measure(renderable, options=out.options.update_width(10_000)).maximum
        if needed > out.width:  # print caps a width at the console's own, hence a console this wide
            Console(file=out.file, highlight=False, soft_wrap=True, width=needed).print(renderable)
            return
    out.print(renderable)


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` (one line per problem) on stderr and exit with ``code``."""
    for line in str(message).splitlines() or [""]:
        typer.echo(f"error: {line}", err=True)
    sys.exit(code)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning (e.g. a dataset plugin's skipped files) as one plain ``warning:`` line."""
    return f"warning: {message}\n"


@contextlib.contextmanager
def _help_as_plain_text(command: Any) -> Iterator[None]:
    """Our help strings are plain text (they say ``[default: 25]``): escaped for Rich while it renders."""
    from rich.markup import escape

    saved = [(command, command.help)] + [(p, getattr(p, "help", None)) for p in command.params]
    for owner, text in saved:
        if text:
            owner.help = escape(text)
    try:
        yield
    finally:
        for owner, text in saved:
            owner.help = text


def _format_help(command: Any, plain: Callable[[], None], ctx: Any) -> None:
    """Typer's Rich panels on a terminal; plain text in pipes, files and logs."""
    if not Console().is_terminal:  # on stdout, where help goes; TTY_COMPATIBLE / FORCE_COLOR=1 force it
        plain()
        return
    from typer import rich_utils

    with _help_as_plain_text(command):
        rich_utils.rich_format_help(obj=command, ctx=ctx, markup_mode="rich")


class HelpCommand(TyperCommand):
    """A subcommand whose ``--help`` is drawn in Typer's Rich style where a terminal shows it."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _format_help(self, lambda: super(HelpCommand, self).format_help(ctx, formatter), ctx)


class PlainErrorsGroup(TyperGroup):
    """Renders usage errors and our own errors as one plain line each, never a traceback;
    help in Typer's Rich style on a terminal."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _format_help(self, lambda: super(PlainErrorsGroup, self).format_help(ctx, formatter), ctx)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any) -> Any:
        refresh_consoles()
        warnings.formatwarning = _format_warning
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            fail("aborted", 130)
        except typer.TyperException as error:  # Typer's (vendored click) usage errors
            ctx = getattr(error, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            message = error.format_message() if hasattr(error, "format_message") else str(error)
            fail(f"{message}{where}", getattr(error, "exit_code", 2))
        except PixelCNNError as error:
            fail(str(error), error.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


def completes(names: Callable[[], Any]) -> Callable[[str], list[str]]:
    """A Tab-completion callback offering ``names()`` (registry or preset names: no torch needed)."""

    def complete(incomplete: str) -> list[str]:
        return [name for name in names() if name.startswith(incomplete)]

    return complete


def user_errors(command: Callable) -> Callable:
    """Turn a :class:`PixelCNNError` raised by a command into a clean exit."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PixelCNNError as error:
            fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def flag_names(ctx: typer.Context) -> dict[str, str]:
    """The command's parameters by name -> the long flag the user types (``output_fname`` ->
    ``--output``), so a bad value is reported by the flag, not by the config field behind it."""
    names = {}
    for param in ctx.command.params:
        long = [opt for opt in param.opts if opt.startswith("--")]
        if param.name and long:
            names[param.name] = long[0]
    return names


def default(model: type[BaseModel], name: str) -> str:
    """``[default: X]`` text for help, read from the pydantic model (the one source of defaults)."""
    field = model.model_fields[name]
    if "[default:" in (field.description or ""):  # the description says what None means
        return field.description
    value = field.get_default(call_default_factory=True)
    return f"{field.description or ''} [default: {value}]".strip()


def parse_key_values(items: list[str] | None, flag: str) -> dict[str, Any] | None:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values read as YAML scalars)."""
    if not items:
        return None
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag}: expected key=value, got {item!r}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        result[key.strip().replace("-", "_")] = parsed
    return result


def device_from_flags(device: str | None, cuda: bool | None) -> str | None:
    """``--device`` wins; ``--cuda``/``--no-cuda`` choose cuda or cpu; neither: automatic."""
    if device:
        return device
    if cuda is None:
        return None
    return "cuda" if cuda else "cpu"
