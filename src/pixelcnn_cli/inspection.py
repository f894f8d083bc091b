"""Everything ``inspect-masks`` shows, computed without any terminal: masks, colour
connections, the causality report of a real network, and a picture of them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw
from torch import nn

from . import registry
from .building import plugin_options
from .causality import CausalityReport, check_causality, full_view_size
from .config import ArchitectureConfig
from .contracts import ModelSpec
from .models.masks import colour_mask, spatial_mask

COLOURS = "RGB"


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

    @property
    def colour_names(self) -> str:
        return COLOURS if self.spec.channels == 3 else "x" * self.spec.channels


def build_untrained(model_name: str, spec: ModelSpec, arch: ArchitectureConfig, extra: dict) -> nn.Module:
    plugin = registry.models.get(model_name)
    declared = set(plugin.options_model.model_fields)
    values = {k: v for k, v in arch.model_dump().items() if k in declared} | extra
    options = plugin_options(plugin, values, "model_options")
    return plugin.build(options, spec)


def inspect(model: nn.Module, model_name: str, spec: ModelSpec, arch: ArchitectureConfig, size: int | None = None) -> Inspection:
    side = size or full_view_size(model, spec)
    report = check_causality(model, spec, side, side)
    # Draw the view of the last colour of the pixel at the bottom middle: it should see every earlier pixel.
    probe = (side - 1, side // 2, spec.channels - 1)
    return Inspection(
        model_name, spec, arch.causal_ksize, arch.hidden_ksize,
        spatial_mask(arch.causal_ksize, "A"), spatial_mask(arch.hidden_ksize, "B"),
        colour_mask(spec.channels, "A"), colour_mask(spec.channels, "B"), report, probe,
    )


def render(inspection: Inspection, cell: int = 18) -> Image.Image:
    """Mask A, mask B and the probed output's view side by side, as a picture."""
    panels = [_mask_panel(inspection.mask_a, "mask A", cell), _mask_panel(inspection.mask_b, "mask B", cell)]
    panels.append(_view_panel(inspection, cell))
    gap = cell
    width = sum(p.width for p in panels) + gap * (len(panels) + 1)
    height = max(p.height for p in panels) + 2 * gap
    canvas = Image.new("RGB", (width, height), "white")
    x = gap
    for panel in panels:
        canvas.paste(panel, (x, gap))
        x += panel.width + gap
    return canvas


def _grid_panel(colours: list[list[str]], title: str, cell: int) -> Image.Image:
    rows, cols = len(colours), len(colours[0])
    panel = Image.new("RGB", (cols * cell + 1, rows * cell + 1 + 16), "white")
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


def _view_panel(inspection: Inspection, cell: int) -> Image.Image:
    report = inspection.report
    row, col, ch = inspection.probe
    view = report.view_of(row, col, ch).any(dim=0)  # any colour of the input pixel seen
    colours = []
    for y in range(report.height):
        line = []
        for x in range(report.width):
            earlier = (y, x) < (row, col)
            seen = bool(view[y, x])
            if (y, x) == (row, col):
                line.append("#f6ad55")
            elif seen and not earlier:
                line.append("#e53e3e")  # sees the future
            elif earlier and not seen:
                line.append("#f6e05e")  # blind spot
            else:
                line.append("#2b6cb0" if seen else "#eeeeee")
        colours.append(line)
    title = f"{inspection.model_name}: view of ({row},{col})"
    return _grid_panel(colours, title, cell)
