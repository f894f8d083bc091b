"""PixelSNAIL (Chen, Mishra, Rohaninejad and Abbeel 2017, arXiv 1712.09763): the network (:mod:`.plugin`
pairs it with its likelihood, the discretised logistic mixture of :mod:`..mixture`).

Read from the paper and the authors' public code (neocxi/pixelsnail-public, the model
``h12_noup_smallkey`` its README trains on CIFAR-10): one stream at full resolution, no down- or
up-sampling. The input gets a constant channel of ones (zeros brought in by padding then differ
from data) and enters PixelCNN++'s ``ul`` stream (the row above through a down-shifted 1x3, the
pixel to the left and the one above it through a down-right-shifted 2x1, both shifted by one).
Then ``attention_blocks`` times: ``nr_resnet`` gated resnet blocks of down-right-shifted 2x2
convolutions, and an attention block:

* keys and values from ``[x, ul, position]`` (the raw input, the features, two position
  channels): one gated resnet block of 1x1 convolutions, then a 1x1 to ``key_size + value_size``
  channels;
* queries from ``[ul, position]`` the same way, to ``key_size`` channels;
* one head of scaled dot-product attention, each pixel over the pixels **strictly** before it in
  raster order: the keys carry the raw input, so the pixel itself must be left out;
* the attended values enter a gated resnet block of 1x1s on ``ul`` as its auxiliary input.

Output: ``nin(elu(ul))``, the mixture's parameters, in fp32 even under autocast. The position
channels are the authors' ``background``: ``(i - H/2) / H`` and ``(j - W/2) / W``.

**Causality.** ``ul`` at ``(i, j)`` depends on input pixels strictly before ``(i, j)`` only (the
shifted convolutions, as in PixelCNN++). A key or value at ``(i, j)`` depends on the pixels up to
and including ``(i, j)``; a query on those strictly before. Pixel ``n`` (raster index) attends to
keys ``m < n`` only, whose pixels are all before ``n``: so the output at every pixel stays a
function of the pixels strictly before it, and (through attention) of **all** of them.

**The first pixel attends to nothing**, and its attended value is exactly zero: inside the
kernel pixel 0 attends to itself (a softmax row with no allowed entry would be NaN, and so would
its gradient), and its output is then multiplied by zero. The authors instead divide by the sum of
weights plus 1e-6, which makes pixel 0 zero as well but shifts every other pixel's weights a
little; here every other row is an exact softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...autocast import in_fp32
from ..blocks import DownRightShiftedConv2d, DownShiftedConv2d, GatedResnet, Nonlinearity, nin
from ..shifts import elu, shift_down, shift_right


def positions(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """The two position channels ``(1, 2, H, W)``: ``(i - H/2) / H`` and ``(j - W/2) / W``."""
    rows = (torch.arange(height, dtype=like.dtype, device=like.device) - height / 2) / height
    cols = (torch.arange(width, dtype=like.dtype, device=like.device) - width / 2) / width
    return torch.stack([rows[:, None].expand(height, width), cols[None, :].expand(height, width)])[None]


def strictly_before(n: int, device: torch.device) -> torch.Tensor:
    """``(n, n)`` booleans: query ``a`` may attend to key ``b`` when ``b < a``, and query 0 to key 0
    (the row that would otherwise be empty; :func:`causal_attention` zeroes its result)."""
    allowed = torch.ones(n, n, dtype=torch.bool, device=device).tril(-1)
    allowed[0, 0] = True
    return allowed


def causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``(B, N, dk)``, ``(B, N, dk)``, ``(B, N, dv)`` -> ``(B, N, dv)``: position ``n`` attends to the
    positions before it, softmax of ``q . k / sqrt(dk)``; position 0 gets exactly zero. Computed by
    ``scaled_dot_product_attention``, so GPUs use their fused kernels."""
    n = query.shape[1]
    allowed = strictly_before(n, query.device)
    out = F.scaled_dot_product_attention(query[:, None], key[:, None], value[:, None], attn_mask=allowed)[:, 0]
    has_past = (torch.arange(n, device=out.device) > 0).to(out.dtype)
    return out * has_past[None, :, None]


def flat(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H * W, C)``: positions in raster order."""
    return x.flatten(2).transpose(1, 2)


class AttentionBlock(nn.Module):
    """Keys and values from ``[x, ul, position]``, queries from ``[ul, position]``, strictly causal
    attention, and a gated resnet block that adds what was attended to ``ul``."""

    def __init__(self, channels: int, nr_filters: int, key_size: int, value_size: int, num_classes: int,
                 dropout: float, nonlinearity: Nonlinearity, condition_dim: int = 0):
        super().__init__()
        content = channels + nr_filters + 2
        self.key_size, self.value_size = key_size, value_size
        self.kv_block = GatedResnet(content, nin, 0, num_classes, dropout, nonlinearity, condition_dim)
        self.kv = nin(content, key_size + value_size)
        self.q_block = GatedResnet(nr_filters + 2, nin, 0, num_classes, dropout, nonlinearity, condition_dim)
        self.q = nin(nr_filters + 2, key_size)
        self.out_block = GatedResnet(nr_filters, nin, value_size, num_classes, dropout, nonlinearity, condition_dim)

    def keys_values(self, x: torch.Tensor, ul: torch.Tensor, position: torch.Tensor, labels: torch.Tensor | None,
                    condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        kv = self.kv(self.kv_block(torch.cat([x, ul, position], dim=1), labels=labels, condition=condition))
        return kv.split([self.key_size, self.value_size], dim=1)

    def queries(self, ul: torch.Tensor, position: torch.Tensor, labels: torch.Tensor | None,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        return self.q(self.q_block(torch.cat([ul, position], dim=1), labels=labels, condition=condition))

    def forward(self, x: torch.Tensor, ul: torch.Tensor, position: torch.Tensor, labels: torch.Tensor | None,
                condition: torch.Tensor | None = None):
        b, _, h, w = ul.shape
        key, value = self.keys_values(x, ul, position, labels, condition)
        mixed = causal_attention(flat(self.queries(ul, position, labels, condition)), flat(key), flat(value))
        mixed = mixed.transpose(1, 2).reshape(b, self.value_size, h, w)
        return self.out_block(ul, mixed, labels, condition)


class PixelSNAILNet(nn.Module):
    """``B x channels x H x W`` in [-1, 1] -> ``B x out_channels x H x W``, the output at ``(i, j)`` a
    function of every channel of every pixel strictly before ``(i, j)`` in raster order, at any
    distance (attention), and of nothing else. Any ``H, W >= 1``."""

    def __init__(self, channels: int, out_channels: int, num_classes: int = 0, nr_resnet: int = 4,
                 nr_filters: int = 256, attention_blocks: int = 12, key_size: int = 16, value_size: int = 128,
                 dropout: float = 0.5, nonlinearity: Nonlinearity = "elu", condition_dim: int = 0):
        super().__init__()
        self.channels, self.out_channels, self.num_classes = channels, out_channels, num_classes
        self.nr_filters = nr_filters
        f, cin = nr_filters, channels + 1  # the ones channel
        self.ul_init_up = DownShiftedConv2d(cin, f, (1, 3))
        self.ul_init_left = DownRightShiftedConv2d(cin, f, (2, 1))
        self.resnets = nn.ModuleList(
            nn.ModuleList(GatedResnet(f, DownRightShiftedConv2d, 0, num_classes, dropout, nonlinearity, condition_dim)
                          for _ in range(nr_resnet))
            for _ in range(attention_blocks))
        self.attention = nn.ModuleList(
            AttentionBlock(channels, f, key_size, value_size, num_classes, dropout, nonlinearity, condition_dim)
            for _ in range(attention_blocks))
        self.out = nin(f, out_channels)

    def first_layer(self, x: torch.Tensor) -> torch.Tensor:
        """``ul`` before the first block: the row above and the pixel to the left, shifted into view."""
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        return shift_down(self.ul_init_up(x)) + shift_right(self.ul_init_left(x))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, condition: torch.Tensor | None = None) -> torch.Tensor:
        """``condition``: a condition map's features ``(B, dim, H, W)`` for a net built with ``condition_dim``."""
        if (labels is None) != (self.num_classes == 0):
            raise ValueError(f"labels must be given exactly when num_classes > 0 (num_classes={self.num_classes})")
        position = positions(x.shape[2], x.shape[3], x).expand(x.shape[0], -1, -1, -1)
        ul = self.first_layer(x)
        for resnets, attention in zip(self.resnets, self.attention):
            for block in resnets:
                ul = block(ul, labels=labels, condition=condition)
            ul = attention(x, ul, position, labels, condition)
        # fp32 under autocast: the mixture's parameters would move by a sizeable part of a bin in bf16
        return in_fp32(self.out, elu(ul))
