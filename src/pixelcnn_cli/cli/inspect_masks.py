"""``pixelcnn inspect-masks``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from ..config import ArchitectureConfig, validate
from ..contracts import ModelSpec
from ..images import check_png_target, save_png
from ..inspection import COLOURS, Inspection, build_untrained, inspect, render
from . import common
from .common import parse_key_values, user_errors
from .loading import load_model

A = ArchitectureConfig


def _mask_table(mask, title: str) -> Table:
    k = mask.shape[0]
    table = Table(title=title, show_header=False, box=None, padding=(0, 1))
    for _ in range(k):
        table.add_column(justify="center")
    for y in range(k):
        row = []
        for x in range(k):
            if (y, x) == (k // 2, k // 2):
                row.append("[bold yellow]◉[/]" if mask[y, x] else "[bold yellow]○[/]")
            else:
                row.append("[blue]■[/]" if mask[y, x] else "[dim]·[/]")
        table.add_row(*row)
    return table


def _colour_table(colours_a, colours_b) -> Table:
    table = Table(title="centre pixel: which colours each output colour may read")
    table.add_column("output")
    table.add_column("mask A (first layer)")
    table.add_column("mask B (later layers)")
    names = COLOURS[: colours_a.shape[0]]
    for o, name in enumerate(names):
        reads_a = ", ".join(names[i] for i in range(len(names)) if colours_a[o, i]) or "none"
        reads_b = ", ".join(names[i] for i in range(len(names)) if colours_b[o, i]) or "none"
        table.add_row(name, reads_a, reads_b)
    return table


def _view_table(result: Inspection) -> Table:
    report = result.report
    row, col, ch = result.probe
    view = report.view_of(row, col, ch).any(dim=0)
    name = COLOURS[ch] if report.channels == 3 else "the value"
    table = Table(title=f"what the output for {name} at pixel ({row}, {col}) sees", show_header=False, box=None, padding=(0, 0))
    for _ in range(report.width):
        table.add_column(justify="center")
    for y in range(report.height):
        cells = []
        for x in range(report.width):
            earlier, seen = (y, x) < (row, col), bool(view[y, x])
            if (y, x) == (row, col):
                cells.append("[bold yellow]◉[/]")
            elif seen and not earlier:
                cells.append("[bold red]![/]")
            elif earlier and not seen:
                cells.append("[bold red]✗[/]")
            else:
                cells.append("[blue]■[/]" if seen else "[dim]·[/]")
        table.add_row(*cells)
    return table


@user_errors
def inspect_masks(
    model_path: Annotated[Optional[str], typer.Option("--model-path", "-m", help="Inspect a trained checkpoint instead of a fresh model")] = None,
    model: Annotated[str, typer.Option(help="Model plugin to build (without -m)")] = "gated",
    channels: Annotated[int, typer.Option(min=1, max=3, help="Data channels of the fresh model: 1 (grey) or 3 (RGB)")] = 3,
    color_levels: Annotated[int, typer.Option(min=2, max=256, help="Colour levels of the fresh model")] = 4,
    causal_ksize: Annotated[int, typer.Option(help="Mask A kernel size")] = A.model_fields["causal_ksize"].default,
    hidden_ksize: Annotated[int, typer.Option(help="Mask B kernel size")] = A.model_fields["hidden_ksize"].default,
    hidden_fmaps: Annotated[int, typer.Option(help="Hidden feature maps")] = A.model_fields["hidden_fmaps"].default,
    out_hidden_fmaps: Annotated[int, typer.Option(help="Output block feature maps")] = A.model_fields["out_hidden_fmaps"].default,
    hidden_layers: Annotated[int, typer.Option(help="Gated mask-B layers")] = A.model_fields["hidden_layers"].default,
    model_option: Annotated[Optional[list[str]], typer.Option(help="key=value option for the model plugin (repeatable)")] = None,
    size: Annotated[Optional[int], typer.Option(min=2, help="Side of the test image [default: the largest the model sees whole]")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Also save the masks and the view as a PNG")] = None,
    cuda: Annotated[Optional[bool], typer.Option("--cuda/--no-cuda", help="Use CUDA (default: when available)")] = None,
) -> None:
    """Show the type A and B masks and prove the network's causality by gradients."""
    if channels == 2:
        raise typer.BadParameter("must be 1 (grey) or 3 (RGB)", param_hint="--channels")
    target = check_png_target(output) if output else None
    if model_path:
        net, spec, config, path, _ = load_model(model_path, "runs", "cpu" if cuda is False or cuda is None else "cuda")
        arch = validate(ArchitectureConfig, config.architecture())
        name = config.model
        common.out.print(f"checkpoint {path}: model {name}, {spec.channels} channel(s), {spec.color_levels} levels")
    else:
        arch = validate(ArchitectureConfig, {"causal_ksize": causal_ksize, "hidden_ksize": hidden_ksize, "hidden_fmaps": hidden_fmaps,
                                             "out_hidden_fmaps": out_hidden_fmaps, "hidden_layers": hidden_layers})
        spec = ModelSpec(channels, 28, 28, color_levels, 10)
        name = model
        net = build_untrained(model, spec, arch, parse_key_values(model_option, "--model-option") or {})
    net.eval()
    result = inspect(net, name, spec, arch, size)

    common.out.print(_mask_table(result.mask_a, f"mask A ({arch.causal_ksize}x{arch.causal_ksize}, first layer)"))
    common.out.print(_mask_table(result.mask_b, f"mask B ({arch.hidden_ksize}x{arch.hidden_ksize}, later layers)"))
    common.out.print("[blue]■[/] seen  [dim]·[/] hidden  ◉/○ centre pixel: own colour seen (B) / not seen (A)")
    if spec.channels == 3:
        common.out.print(_colour_table(result.colours_a, result.colours_b))
    if name == "gated":
        common.out.print(
            "gated stacks: the vertical stack sees the rows above through a "
            f"{arch.hidden_ksize // 2 + 1}x{arch.hidden_ksize} kernel and reaches the horizontal stack one row down; "
            f"the horizontal stack sees the pixels to the left through a 1x{arch.hidden_ksize // 2 + 1} kernel"
        )
    common.out.print(_view_table(result))
    common.out.print("[blue]■[/] seen  [dim]·[/] not yet generated  [bold red]✗[/] blind spot  [bold red]![/] sees the future")
    report = result.report
    if target:
        save_png(render(result), target)
        common.out.print(f"saved {target}")
    checked = f"{report.size} outputs x {report.size} inputs on a {report.height}x{report.width}x{report.channels} image"
    if report.ok:
        common.out.print(f"[bold green]causal[/]: every output depends on exactly the earlier pixels and colours ({checked})")
        return
    problems = []
    if report.future_violations:
        (o, i) = report.first_violation()
        problems.append(f"{report.future_violations} future dependencies (e.g. output {o} sees input {i})")
    if report.blind_spots:
        (o, i) = report.first_blind_spot()
        problems.append(f"{report.blind_spots} blind spots (e.g. output {o} misses input {i})")
    common.err.print(f"[bold red]NOT causal[/]: {'; '.join(problems)} ({checked}); positions are (row, col, colour)")
    raise typer.Exit(1)
