"""The blocks PixelCNN++ and PixelSNAIL are built of: network-in-network (1x1) layers, the two
shifted convolutions that keep a stream causal, and the gated resnet block.

A down-shifted convolution reads its own row and rows above (centred); a down-right-shifted one
its own cell and cells above and to the left. Neither reads anything below or (for the second)
to the right, so a stack of them never looks ahead; one shift at the input (:mod:`.shifts`) then
takes the pixel itself out of view.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .condition import ConditionBias, condition_bias
from .shifts import concat_elu, elu

Nonlinearity = Literal["concat_elu", "elu"]


def nin(in_channels: int, out_channels: int) -> nn.Conv2d:
    """Network-in-network: a 1x1 convolution, i.e. a dense layer over channels at each pixel."""
    return nn.Conv2d(in_channels, out_channels, 1)


class DownShiftedConv2d(nn.Conv2d):
    """Output ``(r, c)`` reads input rows ``r-kh+1 .. r`` and columns ``c-(kw-1)//2 .. c+(kw-1)//2``:
    its own row and rows above, centred; nothing below. With ``stride=2``, output ``(p, q)`` reads
    rows ``2p-kh+1 .. 2p`` and the output has ``ceil(H/2)`` rows."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int] = (2, 3), stride: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride=stride)
        kh, kw = kernel
        self.pad = ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


class DownRightShiftedConv2d(nn.Conv2d):
    """Output ``(r, c)`` reads input rows ``r-kh+1 .. r`` and columns ``c-kw+1 .. c``: itself and
    cells above and to the left only."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int] = (2, 2), stride: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride=stride)
        kh, kw = kernel
        self.pad = (kw - 1, 0, kh - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


class GatedResnet(nn.Module):
    """``x + a * sigmoid(b)`` with ``a, b`` from two convolutions of ``concat_elu`` (or ``elu``)
    activations, an optional auxiliary input (through a 1x1) and an optional per-class bias.
    ``conv(in_channels, out_channels)`` makes each convolution (a shifted one, or :func:`nin`)."""

    def __init__(self, nr_filters: int, conv, aux_channels: int = 0, num_classes: int = 0,
                 dropout: float = 0.5, nonlinearity: Nonlinearity = "concat_elu", condition_dim: int = 0):
        super().__init__()
        self.nonlinearity = nonlinearity
        width = 2 if nonlinearity == "concat_elu" else 1  # concat_elu doubles the channels
        self.conv_in = conv(width * nr_filters, nr_filters)
        self.nin_aux = nin(width * aux_channels, nr_filters) if aux_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = conv(width * nr_filters, 2 * nr_filters)
        # Residual blocks start near the identity: the gated term is about a tenth of what the
        # default initialisation gives, so stacking 2 * (6 * nr_resnet + 2) of them keeps the
        # activations' scale (the paper gets the same from weight norm's data-dependent init);
        # without it Adam at 1e-3 starts from a larger, noisier output.
        with torch.no_grad():
            self.conv_out.weight.mul_(0.1)
            self.conv_out.bias.mul_(0.1)
        # Zero at the start: labels add nothing until training finds a use for them (the default
        # N(0, 1) would shift every gate by a random unit-scale offset per class).
        self.label_bias = nn.Embedding(num_classes, 2 * nr_filters) if num_classes else None
        if self.label_bias is not None:
            nn.init.zeros_(self.label_bias.weight)
        # a condition map's features (models/condition.py), added where the class bias is
        self.condition_bias = ConditionBias(condition_dim, 2 * nr_filters) if condition_dim else None

    def act(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        return concat_elu(x, dim) if self.nonlinearity == "concat_elu" else elu(x)

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                condition: torch.Tensor | None = None):
        c = self.conv_in(self.act(x))
        if self.nin_aux is not None:
            c = c + self.nin_aux(self.act(aux))
        c = self.dropout(self.act(c))
        c = self.conv_out(c)
        if self.label_bias is not None:
            c = c + self.label_bias(labels)[:, :, None, None]
        c = c + condition_bias(self.condition_bias, condition)
        a, b = c.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


def weight_norm_scales(net: nn.Module) -> dict[nn.Module, float]:
    """Every convolution's data-init scale (:mod:`.weight_norm`): openai/pixel-cnn's ``init_scale``,
    0.1 for each gated resnet block's second convolution (so a block starts near the identity), 1
    for every other layer, the output 1x1 included."""
    scales: dict[nn.Module, float] = {m: 1.0 for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
    for block in net.modules():
        if isinstance(block, GatedResnet):
            scales[block.conv_out] = 0.1
    return scales
