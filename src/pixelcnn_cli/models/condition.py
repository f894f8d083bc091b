"""A condition map as a model's input: the hierarchical prior's coarser level, read everywhere.

The Gated PixelCNN conditions on a spatial representation ``h`` through a learnt network that
maps it to the image's size, ``s = m(h)``, added into every layer through a 1x1 convolution
(arXiv 1606.05328, section 2.3); VQ-VAE-2's bottom prior conditions on the top code map the same
way. Here ``m`` is :class:`ConditionNet`: the codes of an ``h x w`` map through a learnt
embedding, a residual 3x3 block at that size, nearest-neighbour upsampling to ``H x W`` and a 3x3
at full size. Nothing in it is masked: the condition is known before the first code is drawn, so
every position may read all of it (the causality check shows both: the codes strictly causal, the
condition readable everywhere). Each layer adds :class:`ConditionBias`, a 1x1 of ``s``, where it
adds its class bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..contracts import ModelSpec


class ConditionNet(nn.Module):
    """``(B, h, w)`` condition codes -> ``(B, dim, H, W)`` features of the target's size (the
    training size; another for a causality check on a smaller image)."""

    def __init__(self, spec: ModelSpec, dim: int):
        super().__init__()
        self.embed = nn.Embedding(spec.condition_codes, dim)
        self.coarse = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ELU(), nn.Conv2d(dim, dim, 3, padding=1))
        self.fine = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, condition: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        c = self.embed(condition.long()).movedim(-1, 1)  # (B, dim, h, w)
        c = c + self.coarse(c)
        c = F.interpolate(c, size=size, mode="nearest")
        return self.fine(F.elu(c))


class ConditionBias(nn.Module):
    """A layer's share of the condition: a 1x1 of the features to ``channels``, zero at the start
    (as the class biases: the condition adds nothing until training finds a use for it)."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.proj = nn.Conv2d(dim, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)

    def matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 1x1 as ``(dim, channels)`` and its bias, for a cached sampler's per-position products."""
        return self.proj.weight.detach()[:, :, 0, 0].t().contiguous(), self.proj.bias.detach()


def condition_bias(bias: ConditionBias | None, features: torch.Tensor | None) -> torch.Tensor | float:
    """A layer's condition term, or 0 for a layer (or model) without one."""
    return 0.0 if bias is None or features is None else bias(features)
