"""Everything ``inspect-masks`` shows, computed without any terminal: masks, colour
connections, the causality report of a real network, the verdict on it, and a picture of them.

A model other than the gated one is shown next to a *reference*: the gated model with the same
kernel sizes and number of layers, inspected on the same image and at the same output, so a
blind spot (the classic PixelCNN's) is drawn beside the full view the gated stacks give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageDraw
from pydantic import BaseModel
from torch import nn

from . import registry
from .building import plugin_options, refuse_undeclared_flags
from .causality import (MIN_CHECK_SIZE, CausalityReport, affordable_size, check_causality, check_cost, condition_reach,
                        full_view_size)
from .config import ArchitectureConfig
from .contracts import ModelSpec
from .errors import ConfigError
from .models.gated.masks import colour_mask, spatial_mask

COLOURS = "RGB"
REFERENCE = "gated"
#: Feature maps of the reference model: the width changes no dependency, only the time taken.
_REFERENCE_FMAPS = 2


@dataclass
class Inspection:
    model_name: str
    spec: ModelSpec
    causal_ksize: int
    hidden_ksize: int
    mask_a: torch.Tensor
    mask_b: torch.Tensor
    colours_a: torch.Tensor
    colours_b: torch.Tensor
    report: CausalityReport
    probe: tuple[int, int, int]  # the output whose view is drawn
    known_blind_spot: bool = False  # the model declares ``has_blind_spot = True``
    masked: bool = True  # the model has mask A/B kernels to draw (PixelCNN++ has none)
    full_view: int = 0  # side of the largest square the model sees whole (the check's default where it fits)
    cost: float = 1.0  # the check's work (parameters x pixels x outputs), and the whole view's
    full_cost: float = 1.0
    condition: torch.Tensor | None = None  # (outputs, cells) bool: the condition cells each output reads

    @property
    def cut_down(self) -> float:
        """How many times longer the check of the whole view would take (1: the whole view was checked)."""
        return self.full_cost / self.cost if self.report.height < self.full_view else 1.0

    def earlier_inputs(self, probe: tuple[int, int, int] | None = None) -> int:
        """How many inputs come before the output ``probe`` (default: the drawn one)."""
        return self.report.index(*(probe or self.probe))

    def unseen_by_probe(self, probe: tuple[int, int, int] | None = None) -> int:
        """Earlier inputs the output ``probe`` does not see (its share of the blind spot)."""
        index = self.report.index(*(probe or self.probe))
        return int((~self.report.depends[index, :index]).sum())


def build_fresh(model_name: str, spec: ModelSpec, flags: dict[str, Any], extra: dict[str, Any]) -> tuple[nn.Module, BaseModel]:
    """A fresh model of plugin ``model_name`` and its validated options.

    ``flags`` are the architecture flags the user gave (the plugin's own defaults fill the
    rest); a flag the plugin does not declare is an error rather than silently ignored.
    """
    refuse_undeclared_flags(model_name, flags)
    plugin = registry.models.get(model_name)
    options = plugin_options(plugin, {**flags, **extra}, "model_options")
    return plugin.build(options, spec), options


def model_shape(model: nn.Module, fallback: dict[str, Any] | None = None) -> dict[str, Any]:
    """The architecture values a model was built with (its ``options``, where every family keeps
    them), over ``fallback``, for display."""
    values = dict(fallback or {})
    options = getattr(model, "options", None)
    if isinstance(options, BaseModel):
        values.update(options.model_dump())
    return values


def has_masks(values: dict[str, Any]) -> bool:
    """Whether a model's options name mask kernels (gated, classic): else there are none to draw."""
    return any(isinstance(values.get(k), int) for k in ("causal_ksize", "hidden_ksize"))


def kernel_sizes(values: dict[str, Any]) -> ArchitectureConfig:
    """Mask sizes to draw: the model's own where it has them, else the gated defaults."""
    known = {k: values[k] for k in ArchitectureConfig.model_fields if isinstance(values.get(k), int)}
    try:
        return ArchitectureConfig.model_validate(known)
    except Exception:  # a plugin's own conventions: draw the default masks
        return ArchitectureConfig()


def reference_model(spec: ModelSpec, shape: ArchitectureConfig) -> nn.Module:
    """The gated model with the kernel sizes and layers of ``shape`` (narrow: width changes no view)."""
    fmaps = _REFERENCE_FMAPS * spec.channels
    options = ArchitectureConfig(causal_ksize=shape.causal_ksize, hidden_ksize=shape.hidden_ksize,
                                 hidden_layers=shape.hidden_layers, hidden_fmaps=fmaps, out_hidden_fmaps=fmaps)
    return registry.models.get(REFERENCE).build(options, spec)


def default_probe(side_h: int, side_w: int, channels: int) -> tuple[int, int, int]:
    """The last colour of the pixel at the bottom middle: it should see every earlier pixel."""
    return side_h - 1, side_w // 2, channels - 1


def worst_probe(report: CausalityReport) -> tuple[int, int, int] | None:
    """The output that shows a problem best, if there is one: the one seeing the most future
    inputs, else the last-colour output missing the most earlier inputs (the largest blind spot).
    Ties go to the latest output in raster order."""
    n = report.size
    earlier = torch.ones(n, n, dtype=torch.bool).tril(diagonal=-1)
    future = (report.depends & ~earlier).sum(dim=1)
    if int(future.max()) > 0:
        return report._position(int((future == future.max()).nonzero()[-1]))
    last = torch.arange(report.channels - 1, n, report.channels)
    missing = (~report.depends & earlier).sum(dim=1)[last]
    if int(missing.max()) == 0:
        return None
    return report._position(int(last[(missing == missing.max()).nonzero()[-1]]))


def inspect(
    model: nn.Module,
    model_name: str,
    spec: ModelSpec,
    arch: Any,
    size: int | None = None,
    probe: tuple[int, int, int] | None = None,
    masked: bool = True,
) -> Inspection:
    """Check ``model`` by gradients on a square image (default: the largest it sees whole, on the
    CPU the largest that also fits :data:`~pixelcnn_cli.causality.CPU_CHECK_BUDGET`).

    ``arch`` only needs ``causal_ksize`` and ``hidden_ksize`` (the masks drawn). The drawn
    output is ``probe``, else the one with the largest blind spot, else the bottom middle.
    """
    full = full_view_size(model, spec)
    on_cpu = next(model.parameters()).device.type == "cpu"
    side = size or (affordable_size(model, spec, full) if on_cpu else full)
    if side < MIN_CHECK_SIZE:
        raise ConfigError(f"--size: must be at least {MIN_CHECK_SIZE} (got {side}): a smaller image has no earlier "
                          "pixel to check")
    known_blind_spot = bool(getattr(model, "has_blind_spot", False))
    # Trials go on while some earlier input is unseen; a declared blind spot never closes, and two
    # random probes with leaky ReLUs already find every real dependency, so stop after three.
    report = check_causality(model, spec, side, side, max_trials=3 if known_blind_spot else 8)
    if probe is None:
        probe = worst_probe(report) or default_probe(side, side, spec.channels)
    return Inspection(
        model_name, spec, arch.causal_ksize, arch.hidden_ksize,
        spatial_mask(arch.causal_ksize, "A"), spatial_mask(arch.hidden_ksize, "B"),
        colour_mask(spec.channels, "A"), colour_mask(spec.channels, "B"), report, probe, known_blind_spot, masked,
        full, check_cost(model, spec.channels, side), check_cost(model, spec.channels, full),
        condition_reach(model, spec, side, side),
    )


# -- the verdict ------------------------------------------------------------------------------

#: A verdict's ``status``: every output sees exactly the earlier inputs; or it sees no later
#: input and misses some earlier ones, as the model declares (``has_blind_spot``): both pass; or
#: it fails, seeing its own or a later input, or missing earlier ones it should see.
CAUSAL, DECLARED_BLIND_SPOT, NOT_CAUSAL = "causal", "declared blind spot", "not causal"

Position = tuple[int, int, int]  # (row, col, colour)


@dataclass(frozen=True)
class Verdict:
    """What an inspection concludes, as data: ``inspect-masks`` words it and exits 1 unless ``passed``."""

    model_name: str
    status: str  # CAUSAL, DECLARED_BLIND_SPOT or NOT_CAUSAL
    outputs: int  # outputs checked, each against as many inputs
    image: tuple[int, int, int]  # the test image: height, width, channels
    future_violations: int  # (output, input) pairs where an output sees its own or a later input
    blind_spots: int  # (output, input) pairs where an earlier input goes unseen
    first_violation: tuple[Position, Position] | None  # (output, input), the first in generation order
    first_blind_spot: tuple[Position, Position] | None
    probe: Position  # the output whose view is drawn
    probe_unseen: int  # earlier inputs it misses
    probe_earlier: int  # earlier inputs it has
    reference: Verdict | None = None  # the gated reference's, on the same image
    condition: ConditionReach | None = None  # how a prior conditioned on maps reads them
    codes: bool = False  # the data are code maps (one channel of codes), not pictures

    @property
    def passed(self) -> bool:
        return self.status != NOT_CAUSAL and (self.condition is None or self.condition.unread == 0)


@dataclass(frozen=True)
class ConditionReach:
    """How the outputs read a condition map: it is known before the first code, so every output
    may read any of it, and each must read some."""

    height: int  # the condition map's size and codes
    width: int
    codes: int
    unread: int  # outputs that read no cell (a failure: the condition is lost there)
    mean_cells: float  # cells an output reads, on average
    first_cells: int  # cells the first output reads (some cover later positions: not masked)
    last_cells: int  # and the last


def condition_summary(spec: ModelSpec, reads: torch.Tensor | None) -> ConditionReach | None:
    if reads is None:
        return None
    per_output = reads.sum(dim=1)
    return ConditionReach(spec.condition_height, spec.condition_width, spec.condition_codes,
                          int((per_output == 0).sum()), float(per_output.float().mean()), int(per_output[0]),
                          int(per_output[-1]))


def verdict(result: Inspection, reference: Inspection | None = None) -> Verdict:
    """The verdict on ``result`` (and on the ``reference`` shown beside it, if any)."""
    report = result.report
    if report.ok:
        status = CAUSAL
    elif result.known_blind_spot and not report.future_violations:
        status = DECLARED_BLIND_SPOT
    else:
        status = NOT_CAUSAL
    return Verdict(
        result.model_name, status, report.size, (report.height, report.width, report.channels),
        report.future_violations, report.blind_spots, report.first_violation(), report.first_blind_spot(),
        result.probe, result.unseen_by_probe(), result.earlier_inputs(),
        verdict(reference) if reference is not None else None, condition_summary(result.spec, result.condition),
        result.spec.codes,
    )


@dataclass
class MaskCheck:
    """One ``inspect-masks``: the model's inspection, the gated reference shown beside a masked model
    other than the gated one (else ``None``), the kernel sizes drawn, and the verdict."""

    result: Inspection
    reference: Inspection | None
    arch: ArchitectureConfig
    verdict: Verdict


def check_masks(model: nn.Module, model_name: str, spec: ModelSpec, shape: dict[str, Any], device: torch.device,
                size: int | None = None) -> MaskCheck:
    """Inspect ``model`` (on ``device``; ``shape``: its options, :func:`model_shape`) and, when it
    has masks and is not the gated model, the gated reference on the same image and output."""
    arch = kernel_sizes(shape)
    masked = has_masks(shape)
    model.eval()
    result = inspect(model, model_name, spec, arch, size, masked=masked)
    reference = None
    if masked and model_name != REFERENCE:
        reference = inspect(reference_model(spec, arch).to(device), REFERENCE, spec, arch, result.report.height,
                            probe=result.probe)
    return MaskCheck(result, reference, arch, verdict(result, reference))


def render(inspection: Inspection, cell: int = 18, reference: Inspection | None = None) -> Image.Image:
    """Mask A, mask B and the probed output's view side by side (and the reference's view), as a picture."""
    panels = [_mask_panel(inspection.mask_a, "mask A", cell), _mask_panel(inspection.mask_b, "mask B", cell)] \
        if inspection.masked else []
    panels.append(_view_panel(inspection, cell))
    if reference is not None:
        panels.append(_view_panel(reference, cell, " (same kernels)"))
    gap = cell
    legend_height = 16
    width = sum(p.width for p in panels) + gap * (len(panels) + 1)
    height = max(p.height for p in panels) + 2 * gap + legend_height
    canvas = Image.new("RGB", (max(width, 420), height), "white")
    x = gap
    for panel in panels:
        canvas.paste(panel, (x, gap))
        x += panel.width + gap
    _legend(ImageDraw.Draw(canvas), gap, height - gap - legend_height + 4)
    return canvas


_LEGEND = [("#f6ad55", "output"), ("#2b6cb0", "seen"), ("#eeeeee", "not yet generated"),
           ("#f6e05e", "blind spot"), ("#e53e3e", "sees the future")]


def _legend(draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
    for colour, label in _LEGEND:
        draw.rectangle((x, y, x + 10, y + 10), fill=colour, outline="#999999")
        draw.text((x + 14, y), label, fill="black")
        x += 14 + int(draw.textlength(label)) + 12


def _grid_panel(colours: list[list[str]], title: str, cell: int) -> Image.Image:
    rows, cols = len(colours), len(colours[0])
    title_width = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title)) + 2
    panel = Image.new("RGB", (max(cols * cell + 1, title_width), rows * cell + 1 + 16), "white")
    draw = ImageDraw.Draw(panel)
    draw.text((0, 0), title, fill="black")
    for y in range(rows):
        for x in range(cols):
            box = (x * cell, 16 + y * cell, (x + 1) * cell, 16 + (y + 1) * cell)
            draw.rectangle(box, fill=colours[y][x], outline="#999999")
    return panel


def _mask_panel(mask: torch.Tensor, title: str, cell: int) -> Image.Image:
    k = mask.shape[0]
    centre = k // 2
    colours = [["#2b6cb0" if mask[y, x] else "#eeeeee" for x in range(k)] for y in range(k)]
    colours[centre][centre] = "#90cdf4" if mask[centre, centre] else "#f6ad55"
    return _grid_panel(colours, title, cell)


def view_cells(inspection: Inspection) -> list[list[str]]:
    """The probed output's view, one word per pixel: output, seen, hidden, blind or future."""
    report = inspection.report
    row, col, ch = inspection.probe
    view = report.view_of(row, col, ch).any(dim=0)  # any colour of the input pixel seen
    cells = []
    for y in range(report.height):
        line = []
        for x in range(report.width):
            earlier = (y, x) < (row, col)
            seen = bool(view[y, x])
            if (y, x) == (row, col):
                line.append("output")
            elif seen and not earlier:
                line.append("future")
            elif earlier and not seen:
                line.append("blind")
            else:
                line.append("seen" if seen else "hidden")
        cells.append(line)
    return cells


_CELL_COLOURS = {"output": "#f6ad55", "future": "#e53e3e", "blind": "#f6e05e", "seen": "#2b6cb0", "hidden": "#eeeeee"}


def _view_panel(inspection: Inspection, cell: int, suffix: str = "") -> Image.Image:
    row, col, _ = inspection.probe
    colours = [[_CELL_COLOURS[kind] for kind in line] for line in view_cells(inspection)]
    title = f"{inspection.model_name}{suffix}: view of ({row},{col})"
    return _grid_panel(colours, title, cell)
