"""What the model families share on the network side: the shifts that keep a stream causal and
``concat_elu``.

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


def concat_elu(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """elu of x and of -x side by side along ``dim``: keeps the information of both signs, and ELU
    has no dead units, so every path of the architecture carries a gradient. (The cached samplers
    call it on cells laid out ``B x C`` or ``B x W x C``, hence ``dim``.)"""
    return F.elu(torch.cat([x, -x], dim=dim))
