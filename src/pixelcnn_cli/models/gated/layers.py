"""Building blocks of the gated PixelCNN: masked convolutions and the two causal stacks.

Padding is explicit (``F.pad`` then an unpadded convolution) so that an output position's
inputs are exactly the rows or columns before it; the cached sampler relies on this to
compute one row or one pixel at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...autocast import in_fp32
from ..condition import ConditionBias, condition_bias
from ..shifts import shift_down
from .masks import MaskType, channel_groups, conv_mask


class MaskedConv2d(nn.Conv2d):
    """A convolution whose weight is multiplied by a fixed 0/1 mask.

    The mask is a buffer, so it moves with the module and is saved in ``state_dict``; the
    product is taken on every forward so masked weights stay zero whatever the optimiser does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int], mask: torch.Tensor):
        super().__init__(in_channels, out_channels, kernel, padding=0)
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias)


def masked_1x1(in_channels: int, out_channels: int, data_channels: int, in_groups=None, out_groups=None) -> MaskedConv2d:
    """A 1x1 convolution that keeps colour groups causal (mask B at the only position)."""
    mask = conv_mask(out_channels, in_channels, (1, 1), (0, 0), "B", data_channels, in_groups, out_groups)
    return MaskedConv2d(in_channels, out_channels, (1, 1), mask)


def gate(x: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) of the two halves along the channel axis."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class VerticalConv(nn.Conv2d):
    """Vertical stack convolution: output row r sees input rows r-k//2 .. r, all columns within k//2.

    It includes its own row, so it reaches the horizontal stack only through :func:`shift_down`.
    """

    def __init__(self, in_channels: int, out_channels: int, ksize: int):
        super().__init__(in_channels, out_channels, (ksize // 2 + 1, ksize))
        self.half = ksize // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.half, self.half, self.half, 0)))


class HorizontalConv(MaskedConv2d):
    """Horizontal stack convolution: pixel c sees columns c-k//2 .. c of its own row, the
    current pixel only through the colour mask (A or B)."""

    def __init__(self, in_channels: int, out_channels: int, ksize: int, mask_type: MaskType, data_channels: int):
        self.half = ksize // 2
        width = self.half + 1
        out_groups = channel_groups(out_channels // 2, data_channels).repeat(2)  # tanh and sigmoid halves
        mask = conv_mask(out_channels, in_channels, (1, width), (0, self.half), mask_type, data_channels, out_groups=out_groups)
        super().__init__(in_channels, out_channels, (1, width), mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.half, 0, 0, 0)))


class GatedBlock(nn.Module):
    """One gated layer with a vertical and a horizontal stack (van den Oord et al. 2016, fig. 2).

    ``first=True`` makes the causal block: image input, mask A, no residual, no skip and no
    label bias (as in the seed).
    """

    def __init__(self, in_channels: int, fmaps: int, ksize: int, data_channels: int, num_classes: int, first: bool,
                 residual: bool = True, condition_dim: int = 0):
        super().__init__()
        self.first = first
        self.fmaps = fmaps
        self.v_conv = VerticalConv(in_channels, 2 * fmaps, ksize)
        self.h_conv = HorizontalConv(in_channels, 2 * fmaps, ksize, "A" if first else "B", data_channels)
        # The vertical stack only holds rows above (once shifted), so any colour may read it.
        self.v_to_h = nn.Conv2d(2 * fmaps, 2 * fmaps, 1)
        self.label_bias = nn.Embedding(num_classes, 2 * fmaps) if (num_classes and not first) else None
        # a condition map's features (models/condition.py), every block the first included
        self.condition_bias = ConditionBias(condition_dim, 2 * fmaps) if condition_dim else None
        if not first:
            # The last block's horizontal output is never read (only its skip is), so it has no
            # residual projection: no dead parameters, and DDP needs no unused-parameter search.
            self.h_residual = masked_1x1(fmaps, fmaps, data_channels) if residual else None
            self.h_skip = masked_1x1(fmaps, fmaps, data_channels)

    def bias(self, labels: torch.Tensor | None, condition: torch.Tensor | None = None) -> torch.Tensor | float:
        label = 0.0 if self.label_bias is None or labels is None else self.label_bias(labels)[:, :, None, None]
        return label + condition_bias(self.condition_bias, condition)

    def forward(self, v: torch.Tensor, h: torch.Tensor, labels: torch.Tensor | None, condition: torch.Tensor | None = None):
        """``condition``: the condition map's features ``(B, dim, H, W)``, for a block built with ``condition_dim``."""
        bias = self.bias(labels, condition)
        v_pre = self.v_conv(v)
        h_pre = self.h_conv(h) + self.v_to_h(shift_down(v_pre)) + bias
        v_out = gate(v_pre + bias)
        h_gated = gate(h_pre)
        if self.first:
            return v_out, h_gated, None
        h_out = h + self.h_residual(h_gated) if self.h_residual is not None else h
        return v_out, h_out, self.h_skip(h_gated)


class OutputHead(nn.Module):
    """Skip sum -> ReLU -> 1x1 -> ReLU -> 1x1 to ``channels * color_levels`` logits (colour-causal).

    It computes in fp32 under autocast too (:func:`~pixelcnn_cli.autocast.in_fp32`): bf16 logits
    would round the softmax that training optimises and eval reports."""

    def __init__(self, fmaps: int, out_fmaps: int, data_channels: int, color_levels: int):
        super().__init__()
        self.data_channels = data_channels
        self.color_levels = color_levels
        hidden_groups = channel_groups(out_fmaps, data_channels)
        self.hidden = masked_1x1(fmaps, out_fmaps, data_channels, out_groups=hidden_groups)
        logit_groups = torch.arange(data_channels).repeat_interleave(color_levels)
        self.logits = masked_1x1(out_fmaps, data_channels * color_levels, data_channels, hidden_groups, logit_groups)
        self.relu = nn.ReLU()  # a module, so the causality check can make it leaky

    def forward(self, skip: torch.Tensor) -> torch.Tensor:
        x = in_fp32(self._logits, skip)
        b, _, height, width = x.shape
        # channel index c * L + l  ->  (batch, L, C, H, W)
        return x.view(b, self.data_channels, self.color_levels, height, width).transpose(1, 2)

    def _logits(self, skip: torch.Tensor) -> torch.Tensor:
        return self.logits(self.relu(self.hidden(self.relu(skip))))
