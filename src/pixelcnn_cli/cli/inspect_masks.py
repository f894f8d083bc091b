"""``pixelcnn inspect-masks``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from .. import registry
from ..config import MIN_CHECK_SIZE, ArchitectureConfig
from . import common
from .common import completes, device_from_flags, parse_key_values, user_errors
from .options import CpuUnlessCuda, Device, InspectModelPath

if TYPE_CHECKING:
    from ..inspection import Inspection, MaskCheck, Verdict

A = ArchitectureConfig
FRESH_CONDITION = 7  # side of a fresh conditioned prior's condition maps (a quarter of its 28x28)


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
    from ..inspection import COLOURS

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


_CELL_MARKS = {"output": "[bold yellow]◉[/]", "future": "[bold red]![/]", "blind": "[bold red]✗[/]",
               "seen": "[blue]■[/]", "hidden": "[dim]·[/]"}


def _view_table(result: Inspection, title: str | None = None) -> Table:
    from ..inspection import view_cells

    report = result.report
    row, col, _ = result.probe
    name = _output_name(result.probe, report.channels)
    title = f"what the output for {name} at pixel ({row}, {col}) sees" if title is None else title
    table = Table(title=title or None, show_header=False, box=None, padding=(0, 0))
    for _ in range(report.width):
        table.add_column(justify="center")
    for line in view_cells(result):
        table.add_row(*(_CELL_MARKS[kind] for kind in line))
    return table


def _side_by_side(result: Inspection, reference: Inspection, layers: int) -> Table:
    row, col, _ = result.probe
    name = _output_name(result.probe, result.report.channels)
    grid = Table(title=f"what the output for {name} at pixel ({row}, {col}) sees", box=None, padding=(0, 4, 0, 0))
    grid.add_column(result.model_name, no_wrap=True)
    grid.add_column(f"{reference.model_name} (same kernels, {layers} layers)", no_wrap=True)
    grid.add_row(_view_table(result, ""), _view_table(reference, ""))
    return grid


def _flags(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


@user_errors
def inspect_masks(
    model_path: InspectModelPath = None,
    model: Annotated[str, typer.Option(help="Model plugin to build (without -m); a masked model other than gated is shown beside the gated one",
                                       autocompletion=completes(registry.models.names))] = "gated",
    channels: Annotated[Optional[int], typer.Option(min=1, max=3, help="Data channels of the fresh model: 1 (grey) or 3 (RGB) [default: 3]")] = None,
    color_levels: Annotated[Optional[int], typer.Option(min=2, max=256, help="Colour levels of the fresh model [default: 4]")] = None,
    codes: Annotated[Optional[int], typer.Option(min=2, max=65536, help="Build the fresh model over K codes instead (one channel read through an embedding, a K-way softmax; gated, pixelsnail)")] = None,
    condition_codes: Annotated[Optional[int], typer.Option(min=2, max=65536, help=f"With --codes: condition the fresh model on {FRESH_CONDITION}x{FRESH_CONDITION} maps of this many codes too (a hierarchical prior's lower level)")] = None,
    causal_ksize: Annotated[Optional[int], typer.Option(help=f"Mask A kernel size [default: the model's own; gated: {A.model_fields['causal_ksize'].default}]")] = None,
    hidden_ksize: Annotated[Optional[int], typer.Option(help=f"Mask B kernel size [default: the model's own; gated: {A.model_fields['hidden_ksize'].default}]")] = None,
    hidden_fmaps: Annotated[Optional[int], typer.Option(help=f"Hidden feature maps [default: the model's own; gated: {A.model_fields['hidden_fmaps'].default}]")] = None,
    out_hidden_fmaps: Annotated[Optional[int], typer.Option(help=f"Output block feature maps [default: the model's own; gated: {A.model_fields['out_hidden_fmaps'].default}]")] = None,
    hidden_layers: Annotated[Optional[int], typer.Option(help=f"Mask-B layers [default: the model's own; gated: {A.model_fields['hidden_layers'].default}]")] = None,
    model_option: Annotated[Optional[list[str]], typer.Option(help="key=value option for the model plugin (repeatable)")] = None,
    size: Annotated[Optional[int], typer.Option(min=MIN_CHECK_SIZE, help="Side of the test image [default: the largest the model sees whole; on the CPU, for a large model, the largest whose check takes a few minutes]")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Also save the masks and the view as a PNG")] = None,
    cuda: CpuUnlessCuda = False,
    device: Device = None,
) -> None:
    """Show the type A and B masks and prove the network's causality by gradients.

    Exits 1 when an output depends on its own or a later input. A blind spot (earlier inputs
    never seen) also exits 1, unless the model declares it (its plugin's has_blind_spot, as
    the classic PixelCNN's does): then it is drawn and counted, and the gated model is shown beside it.
    """
    if channels == 2:
        raise typer.BadParameter("must be 1 (grey) or 3 (RGB)", param_hint="--channels")
    if codes is not None and (channels is not None or color_levels is not None):
        raise typer.BadParameter("a model over codes has one channel of K codes; leave --channels and --color-levels out",
                                 param_hint="--codes")
    if condition_codes is not None and codes is None:
        raise typer.BadParameter("condition maps go with a prior over codes: give --codes K too", param_hint="--condition-codes")
    # torch loads here, not at import: --help and completion stay quick
    from ..building import resolve_device
    from ..images import check_png_target, save_png
    from ..inspection import check_masks, render

    target = check_png_target(output) if output else None
    device = resolve_device(device_from_flags(device, cuda))
    if model_path:
        net, spec, name, shape = _trained(model_path, device)
    else:
        flags = _flags(causal_ksize=causal_ksize, hidden_ksize=hidden_ksize, hidden_fmaps=hidden_fmaps,
                       out_hidden_fmaps=out_hidden_fmaps, hidden_layers=hidden_layers)
        net, spec, name, shape = _fresh(model, _fresh_spec(channels, color_levels, codes, condition_codes), flags, model_option, device)
    check = check_masks(net, name, spec, shape, device, size)
    _show(check)
    if size is None and check.result.cut_down > 1:
        _say_cut_down(check.result, sum(p.numel() for p in net.parameters()))
    if target:
        save_png(render(check.result, reference=check.reference), target)
        common.out.print(f"saved {target}")
    _print_verdict(check.verdict)
    if not check.verdict.passed:
        raise typer.Exit(1)


def _trained(model_path: str, device) -> tuple:
    """-> (model, spec, model name, its options) of a checkpoint, which is said."""
    from ..inspection import model_shape
    from .checkpoint_choice import load_model

    net, spec, config, path, _ = load_model(model_path, "runs", str(device))
    shape = model_shape(net, {**config.architecture(), **config.model_options})
    data = f"{spec.color_levels} codes" if spec.codes else f"{spec.channels} channel(s), {spec.color_levels} levels"
    common.out.print(f"checkpoint {path}: model {config.model}, {data}")
    return net, spec, config.model, shape


def _fresh_spec(channels: int | None, color_levels: int | None, codes: int | None, condition_codes: int | None = None):
    """The data a fresh model is built for: 28x28 with 10 classes, pictures or ``codes`` codes
    (conditioned on small maps of ``condition_codes`` codes)."""
    from ..contracts import ModelSpec

    if codes is not None:
        side = FRESH_CONDITION if condition_codes else 0
        return ModelSpec(1, 28, 28, codes, 10, codes=True, condition_codes=condition_codes or 0, condition_height=side,
                         condition_width=side)
    return ModelSpec(3 if channels is None else channels, 28, 28, 4 if color_levels is None else color_levels, 10)


def _fresh(model: str, spec, flags: dict, model_option: list[str] | None, device) -> tuple:
    """-> (model, spec, model name, its options) of a fresh model of plugin ``model`` for ``spec``, on ``device``."""
    from ..building import check_model_takes_data
    from ..inspection import build_fresh, model_shape

    check_model_takes_data(model, spec)
    net, options = build_fresh(model, spec, flags, parse_key_values(model_option, "--model-option") or {})
    shape = model_shape(net, options.model_dump())
    net.to(device)
    return net, spec, model, shape


def _show(check: MaskCheck) -> None:
    """The masks (if any), the colours they connect, and what the probed output sees."""
    result, arch = check.result, check.arch
    name = result.model_name
    if not result.masked:
        common.out.print(
            f"{name}: no masked kernels; its order comes from how its layers are shifted (for PixelCNN++ also "
            "from its down- and up-sampling streams, for PixelSNAIL from its strictly causal attention), so the "
            "gradients below are the whole proof"
        )
        common.out.print(_view_table(result))
    else:
        common.out.print(_mask_table(result.mask_a, f"mask A ({arch.causal_ksize}x{arch.causal_ksize}, first layer)"))
        common.out.print(_mask_table(result.mask_b, f"mask B ({arch.hidden_ksize}x{arch.hidden_ksize}, later layers)"))
        common.out.print("[blue]■[/] seen  [dim]·[/] hidden  ◉/○ centre pixel: own colour seen (B) / not seen (A)")
        if result.spec.channels == 3:
            common.out.print(_colour_table(result.colours_a, result.colours_b))
    if result.masked and check.reference is None:  # the gated model itself
        common.out.print(
            "gated stacks: the vertical stack sees the rows above through a "
            f"{arch.hidden_ksize // 2 + 1}x{arch.hidden_ksize} kernel and reaches the horizontal stack one row down; "
            f"the horizontal stack sees the pixels to the left through a 1x{arch.hidden_ksize // 2 + 1} kernel"
        )
        common.out.print(_view_table(result))
    elif result.masked:
        if result.known_blind_spot:
            common.out.print(
                f"{name}: one stack of masked convolutions; each mask-B layer widens the view only from rows it "
                "already sees, so a wedge of earlier pixels above and to the right is never seen (the blind spot). "
                "The gated model's vertical stack removes it:"
            )
        common.out.print(_side_by_side(result, check.reference, arch.hidden_layers))
    common.out.print("[blue]■[/] seen  [dim]·[/] not yet generated  [bold red]✗[/] blind spot  [bold red]![/] sees the future")


def _say_cut_down(result: Inspection, params: int) -> None:
    """Why a large model is checked on a smaller square than it sees whole, and how to check that one."""
    side, full = result.report.height, result.full_view
    common.out.print(
        f"{result.model_name} has {params / 1e6:.1f}M parameters: checked on a {side}x{side} image, not the "
        f"{full}x{full} it sees whole, to keep the CPU check to a few minutes (see the README); "
        f"--size {full} checks that square (about {result.cut_down:.0f}x longer), --cuda on a GPU"
    )


def _print_verdict(verdict: Verdict) -> None:
    """The verdict in words: the reference's, then causal (maybe with its declared blind spot) or NOT causal."""
    from ..inspection import CAUSAL, DECLARED_BLIND_SPOT, REFERENCE

    height, width, channels = verdict.image
    checked = (f"{verdict.outputs} outputs x {verdict.outputs} inputs on a {height}x{width} map" if verdict.codes else
               f"{verdict.outputs} outputs x {verdict.outputs} inputs on a {height}x{width}x{channels} image")
    ref = verdict.reference
    if ref is not None:
        words = "no blind spot, no future dependency" if ref.status == CAUSAL else (
            f"{ref.future_violations} future dependencies, {ref.blind_spots} blind spots")
        common.out.print(f"{REFERENCE} with the same kernels and layers: {words} (same image)")
    if verdict.status == CAUSAL:
        earlier = "codes" if verdict.codes else "pixels and colours"
        common.out.print(f"[bold green]causal[/]: every output depends on exactly the earlier {earlier} ({checked})")
    elif verdict.status == DECLARED_BLIND_SPOT:
        (o, i), (row, col, _) = verdict.first_blind_spot, verdict.probe
        common.out.print(f"[bold green]causal[/]: no output depends on its own or a later input ({checked})")
        common.out.print(
            f"[bold yellow]blind spot[/]: {verdict.blind_spots} earlier inputs unseen, summed over all outputs "
            f"(e.g. output {o} misses input {i}); the output for {_output_name(verdict.probe, channels)} at ({row}, {col}) "
            f"misses {verdict.probe_unseen} of its {verdict.probe_earlier} earlier inputs. "
            f"Expected: {verdict.model_name} declares this blind spot; positions are (row, col, colour)"
        )
    else:
        _print_not_causal(verdict, checked)
    if verdict.condition is not None:
        _print_condition(verdict)


def _print_condition(verdict: Verdict) -> None:
    """How the outputs read the condition map (known before the first code: any of it, anywhere)."""
    c, outputs = verdict.condition, verdict.outputs
    where = f"the {c.height}x{c.width} condition map of {c.codes} codes"
    if c.unread:
        common.err.print(f"[bold red]condition lost[/]: {c.unread} of {outputs} outputs read no cell of {where}")
        return
    common.out.print(
        f"[bold green]condition read everywhere[/]: each of the {outputs} outputs reads {where} (on average "
        f"{c.mean_cells:.1f} of its {c.height * c.width} cells; the first output {c.first_cells}, the last "
        f"{c.last_cells}: unmasked, since the map is known before the first code), while the codes stay causal as above"
    )


def _print_not_causal(verdict: Verdict, checked: str) -> None:
    problems = []
    if verdict.future_violations:
        (o, i) = verdict.first_violation
        problems.append(f"{verdict.future_violations} future dependencies (e.g. output {o} sees input {i})")
    if verdict.blind_spots:
        (o, i) = verdict.first_blind_spot
        problems.append(f"{verdict.blind_spots} blind spots (e.g. output {o} misses input {i})")
    common.err.print(f"[bold red]NOT causal[/]: {'; '.join(problems)} ({checked}); positions are (row, col, colour)")


def _output_name(probe: tuple[int, int, int], channels: int) -> str:
    """The colour of a probed output, in words: R, G or B, or "the value" of a grey image."""
    from ..inspection import COLOURS

    return COLOURS[probe[2]] if channels == 3 else "the value"
