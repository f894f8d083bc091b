"""The gated PixelCNN's autoregressive order, proven by gradients (not by reading masks)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from pixelcnn_cli.causality import check_causality, full_view_size
from pixelcnn_cli.config import ArchitectureConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.errors import ConfigError
from pixelcnn_cli.inspection import inspect
from pixelcnn_cli.models.gated import layers
from pixelcnn_cli.models.gated import GatedPixelCNNPlugin


def build(channels: int, ksize: int, layers_: int, classes: int, causal_ksize: int | None = None):
    arch = ArchitectureConfig(
        causal_ksize=causal_ksize or ksize, hidden_ksize=ksize, hidden_fmaps=6 * channels if channels == 3 else 8,
        out_hidden_fmaps=3 * channels + 1, hidden_layers=layers_,
    )
    spec = ModelSpec(channels, 16, 16, 4, classes)
    torch.manual_seed(ksize * 10 + layers_)
    return GatedPixelCNNPlugin().build(arch, spec), spec


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("ksize,depth", [(3, 1), (3, 3), (5, 2), (7, 1), (7, 3)])
@pytest.mark.parametrize("classes", [0, 10])
def test_gated_model_sees_exactly_the_past(channels, ksize, depth, classes):
    model, spec = build(channels, ksize, depth, classes)
    side = full_view_size(model, spec)
    report = check_causality(model, spec, side, side)
    assert report.future_violations == 0, report.first_violation()
    assert report.blind_spots == 0, report.first_blind_spot()
    # the first colour of the first pixel sees nothing; the last output sees every earlier input
    assert not report.depends[0].any()
    assert report.depends[-1, :-1].all()


def test_non_square_image_and_different_causal_kernel():
    model, spec = build(3, 3, 2, 10, causal_ksize=5)  # reach 2 + 2 * 1 = 4
    assert check_causality(model, spec, 3, 5).ok
    wide = check_causality(model, spec, 2, 7)  # 6 columns apart: beyond the reach, never the future
    assert wide.future_violations == 0 and wide.blind_spots > 0


def test_rgb_order_within_a_pixel():
    model, spec = build(3, 3, 1, 0)
    report = check_causality(model, spec, 3, 3)
    r, g, b = (report.index(1, 1, c) for c in range(3))
    assert report.depends[g, r] and not report.depends[r, g]  # G given R, never R given G
    assert report.depends[b, r] and report.depends[b, g] and not report.depends[g, b]
    assert not report.depends[r, r] and not report.depends[g, g] and not report.depends[b, b]


def test_receptive_field_limit_is_not_called_a_blind_spot_when_within_reach():
    model, spec = build(1, 3, 1, 0)  # reach 2: a 3x3 image is fully seen
    assert full_view_size(model, spec) == 3
    assert check_causality(model, spec, 3, 3).ok


def test_a_causal_kernel_of_one_is_refused_and_a_hidden_kernel_of_one_sees_exactly_the_past():
    """Mask A 1x1 hides the earlier pixels of a pixel's own row (the check finds the blind spot
    if the model is built anyway); mask B 1x1 only adds no reach."""
    with pytest.raises(ValidationError, match="causal_ksize"):
        ArchitectureConfig(causal_ksize=1)
    for channels in (1, 3):
        model, spec = build(channels, 1, 2, 10, causal_ksize=3)  # the smallest kernels accepted: reach 1
        side = full_view_size(model, spec)
        assert side == 2
        assert check_causality(model, spec, side, side).ok


def test_the_check_never_uses_an_image_smaller_than_2x2():
    """A 1x1 image has no earlier pixel: a model blind to its own row or the row above would pass."""

    class NoReach(torch.nn.Module):  # e.g. a plugin whose kernels add no reach
        reach = 0

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 1)

        def forward(self, x, labels=None):
            return self.conv(x)[:, :, None] * 0  # (B, 2 levels, 1 channel, H, W), sees nothing

    spec = ModelSpec(1, 16, 16, 2, 0)
    assert full_view_size(NoReach(), spec) == 2
    report = inspect(NoReach(), "noreach", spec, ArchitectureConfig()).report
    assert (report.height, report.width) == (2, 2) and report.blind_spots > 0  # the blindness shows
    with pytest.raises(ConfigError, match="at least 2"):
        inspect(NoReach(), "noreach", spec, ArchitectureConfig(), size=1)


def test_the_check_catches_a_vertical_stack_fed_without_its_shift(monkeypatch):
    """Feed the vertical stack to the horizontal one unshifted: the current row's future leaks."""
    monkeypatch.setattr(layers, "shift_down", lambda x: x)
    model, spec = build(1, 3, 1, 0)
    report = check_causality(model, spec, 4, 4)
    assert report.future_violations > 0
    (row, col, _), (in_row, in_col, _) = report.first_violation()
    assert (in_row, in_col) >= (row, col)


def test_the_check_catches_mask_b_in_the_first_layer():
    """Mask B in the first layer lets a pixel see its own value."""
    model, spec = build(1, 3, 1, 0)
    first = model.blocks[0].h_conv
    first.mask[:, :, 0, -1] = 1.0  # centre tap open
    with torch.no_grad():
        first.weight[:, :, 0, -1] = 0.5
    report = check_causality(model, spec, 3, 3)
    assert report.future_violations > 0
    out, inp = report.first_violation()
    assert out == inp  # an output that sees its own input


def test_the_check_catches_a_blind_spot():
    """Cut the vertical stack: rows above become invisible."""
    model, spec = build(1, 3, 2, 0)
    for block in model.blocks:
        torch.nn.init.zeros_(block.v_to_h.weight)
    report = check_causality(model, spec, 4, 4)
    assert report.future_violations == 0
    assert report.blind_spots > 0
