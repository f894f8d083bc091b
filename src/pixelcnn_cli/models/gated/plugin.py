"""The Gated PixelCNN (van den Oord et al. 2016, arXiv 1606.05328) as the seed built it, made right.

A causal block (mask A: vertical and horizontal stacks, no residual, skip or label bias), then
``hidden_layers`` gated blocks (mask B, tanh * sigmoid gates, residual and skip connections,
label bias), then skip sum -> ReLU -> 1x1 -> ReLU -> 1x1 to ``channels * color_levels`` logits.
The vertical stack reaches the horizontal one only through a one-row shift, so there is no
blind spot; feature maps are split into colour groups so that, with three data channels, R is
predicted first, then G given R, then B given R and G. Codes (``spec.codes``) are read through a
learnt embedding as wide as the feature maps (the VQ-VAE paper's prior is this model over codes).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel
from torch import nn

from ...config import ArchitectureConfig
from ...contracts import ModelSpec
from ...contracts import split_context
from ...errors import ConfigError
from ..codes import CodeEmbedding
from ..condition import ConditionNet
from .incremental import GatedIncrementalState
from .layers import GatedBlock, OutputHead


class GatedPixelCNN(nn.Module):
    def __init__(self, spec: ModelSpec, arch: ArchitectureConfig):
        super().__init__()
        self.spec = spec
        self.options = arch  # the plugin's validated options, as every built-in model keeps them
        c = spec.channels
        # codes (one channel) are read through hidden_fmaps-wide vectors, one colour group
        self.embed = CodeEmbedding(spec.color_levels, arch.hidden_fmaps) if spec.codes else None
        inputs = arch.hidden_fmaps if spec.codes else c
        # a condition map (codes only): features as wide as the feature maps, added in every block
        dim = arch.hidden_fmaps if spec.condition_codes else 0
        self.condition_net = ConditionNet(spec, dim) if dim else None
        blocks = [GatedBlock(inputs, arch.hidden_fmaps, arch.causal_ksize, c, spec.num_classes, first=True, condition_dim=dim)]
        for i in range(arch.hidden_layers):
            last = i == arch.hidden_layers - 1
            blocks.append(GatedBlock(arch.hidden_fmaps, arch.hidden_fmaps, arch.hidden_ksize, c, spec.num_classes,
                                     first=False, residual=not last, condition_dim=dim))
        self.blocks = nn.ModuleList(blocks)
        self.head = OutputHead(arch.hidden_fmaps, arch.out_hidden_fmaps, c, spec.color_levels)

    def condition_features(self, labels: torch.Tensor | None, size: tuple[int, int]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The classes and the condition map's features at ``size`` (``None`` without one) of a packed context."""
        classes, condition = split_context(labels, self.spec)
        return classes, (None if condition is None else self.condition_net(condition, size))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        v = h = x if self.embed is None else self.embed(x)
        classes, features = self.condition_features(labels, x.shape[-2:])
        skip = 0.0
        for block in self.blocks:
            v, h, s = block(v, h, classes, features)
            if s is not None:
                skip = skip + s
        return self.head(skip)

    def incremental_sampler(self, labels: torch.Tensor | None, count: int, height: int, width: int):
        """Cached per-layer state for fast sampling (see :mod:`.incremental`); same function as
        :meth:`forward`, one pixel at a time."""
        classes, features = self.condition_features(labels, (height, width))
        return GatedIncrementalState(list(self.blocks), self.head, classes, count, height, width, self.embed, features)

    @property
    def reach(self) -> int:
        """How far (in pixels, in every direction) the stacks see: every earlier pixel of a
        ``(reach + 1)``-square image is in view."""
        arch = self.options
        return arch.causal_ksize // 2 + arch.hidden_layers * (arch.hidden_ksize // 2)


def check_architecture(arch: ArchitectureConfig, spec: ModelSpec) -> None:
    """Checks that need the data: colour groups must split the feature maps."""
    c = spec.channels
    if arch.hidden_fmaps % c:
        raise ConfigError(f"hidden_fmaps: must be divisible by the {c} data channels (got {arch.hidden_fmaps})")
    if arch.out_hidden_fmaps < c:
        raise ConfigError(f"out_hidden_fmaps: must be at least the {c} data channels (got {arch.out_hidden_fmaps})")


class GatedPixelCNNPlugin:
    """The built-in model plugin ``gated``; its options are the seed's architecture flags."""

    name = "gated"
    options_model: type[BaseModel] = ArchitectureConfig
    takes_codes = True
    takes_condition = True

    def build(self, options: ArchitectureConfig, spec: ModelSpec) -> GatedPixelCNN:
        check_architecture(options, spec)
        return GatedPixelCNN(spec, options)
