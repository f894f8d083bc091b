"""What the model families share on the network side: the shifts that keep a stream causal,
:func:`elu` and ``concat_elu``.

A shift moves a map by one row or column and brings in zeros, so an output that included its own
row (or column) no longer does: the gated model's vertical stack reaches its horizontal stack one
row down, PixelCNN++'s initial layers take the pixel itself out of view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (zeros on top, the last row dropped): row r then holds row r - 1."""
    return F.pad(x, (0, 0, 1, 0))[:, :, : x.shape[2], :]


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right (zeros on the left, the last column dropped)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, : x.shape[3]]


class _ELU(torch.autograd.Function):
    """ELU as ``max(x, exp(min(x, 0)) - 1)`` (``e^x - 1 >= x`` everywhere, so the maximum picks the
    right branch), backward from the result by ATen's own ``elu_backward``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clamp(max=0).exp_().sub_(1)
        torch.maximum(y, x, out=y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, 1.0, 1, 1, True, y)


def elu(x: torch.Tensor) -> torch.Tensor:
    """``F.elu(x)`` (alpha 1), computed through ``exp`` instead of ``expm1``: on the CPU, ATen's
    ELU runs ``expm1`` per element, about 5 ms per million values with any negative among them
    against 0.5 ms for the vectorised ``exp`` (2026-12-03, the 2-core machine), and PixelCNN++ and
    PixelSNAIL apply it to every map of every block. In fp32 ``e^x - 1`` differs from
    ``expm1(x)`` by at most a rounding of 1 (about 6e-8), far below what the network can tell.
    Elsewhere (GPUs, whose ``expm1`` is fast, and bf16, where ``e^x`` rounded near 1 would lose
    small negative values) it is ``F.elu`` itself."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return F.elu(x)
    return _ELU.apply(x)


def concat_elu(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """elu of x and of -x side by side along ``dim``: keeps the information of both signs, and ELU
    has no dead units, so every path of the architecture carries a gradient. (The cached samplers
    call it on cells laid out ``B x C`` or ``B x W x C``, hence ``dim``.)"""
    return elu(torch.cat([x, -x], dim=dim))
