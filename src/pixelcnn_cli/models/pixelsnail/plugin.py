"""The model plugin ``pixelsnail``: PixelSNAIL's network (:mod:`.net`) with the discretised logistic
mixture likelihood it shares with PixelCNN++ (:mod:`..mixture`), and its cached sampler state
(:mod:`.incremental`). Over codes (``spec.codes``, VQ-VAE-2's top prior) the network reads each code
through a learnt embedding as wide as the stream and ends in a K-way softmax per position."""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ...contracts import ModelSpec, split_context
from ...errors import ConfigError
from .. import mixture
from ..blocks import Nonlinearity, weight_norm_scales
from ..codes import CodeEmbedding
from ..condition import ConditionBias, ConditionNet
from ..weight_norm import apply_weight_norm, convolutions, init_from_batch
from .incremental import PixelSNAILCodeState, PixelSNAILIncrementalState
from .net import PixelSNAILNet

#: Attention sees every earlier pixel at any distance: ``inspect-masks`` checks the whole image
#: (or the largest square its CPU budget affords) and expects no blind spot anywhere.
UNBOUNDED_REACH = 1 << 20


class PixelSNAILOptions(BaseModel):
    """PixelSNAIL's options; the defaults are the authors' CIFAR-10 model (``h12_noup_smallkey``,
    the flags of their README and the defaults of their train.py)."""

    model_config = ConfigDict(extra="forbid")

    nr_resnet: int = Field(4, ge=1, description="Gated resnet blocks before each attention block (the authors: 4)")
    nr_filters: int = Field(256, ge=1, description="Feature maps of the stream (the authors: 256)")
    attention_blocks: int = Field(12, ge=1, description="Attention blocks, each after nr_resnet resnet blocks (the authors: 12)")
    key_size: int = Field(16, ge=1, description="Channels of each key and query (the authors: 16)")
    value_size: Optional[int] = Field(None, ge=1, description="Channels of each value (the authors: nr_filters / 2)")
    nr_logistic_mix: int = Field(10, ge=1, description="Components of the discretised logistic mixture (the authors: 10; "
                                                       "codes have a softmax instead)")
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout in every block while training (the authors: 0.5)")
    nonlinearity: Nonlinearity = Field("elu", description="Activation inside the gated resnet blocks (the authors' train.py: elu)")
    weight_norm: bool = Field(False, description="Weight normalisation, initialised from the first 16 training "
                                                 "images (the authors: on, from 8)")


def network(spec: ModelSpec, options: PixelSNAILOptions, channels: int, out_channels: int,
            condition_dim: int = 0) -> PixelSNAILNet:
    """The network of ``options`` from ``channels`` inputs to ``out_channels`` outputs per pixel."""
    value_size = options.value_size or max(1, options.nr_filters // 2)
    net = PixelSNAILNet(channels, out_channels, spec.num_classes, options.nr_resnet, options.nr_filters,
                        options.attention_blocks, options.key_size, value_size, options.dropout, options.nonlinearity,
                        condition_dim)
    if options.weight_norm:
        # the condition's 1x1s start at zero (they add nothing until trained), which weight norm cannot
        zero = {m.proj for m in net.modules() if isinstance(m, ConditionBias)}
        apply_weight_norm(c for c in convolutions(net) if c not in zero)
    return net


class PixelSNAIL(nn.Module):
    """The network and its likelihood: ``forward`` gives mixture parameters, ``nll`` and
    ``level_log_probs`` say what they mean (the model contract's likelihood methods)."""

    reach = UNBOUNDED_REACH
    #: the CPU check of a large model shrinks its square to fit a budget, but not below this: on
    #: 16x16 the attention is what reaches most earlier pixels (the convolutions, a few rows)
    min_check_size = 16

    def __init__(self, spec: ModelSpec, options: PixelSNAILOptions):
        super().__init__()
        self.spec = spec
        self.options = options
        self.net = network(spec, options, spec.channels, mixture.channels_for(spec.channels, options.nr_logistic_mix))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, labels)

    def data_init(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Weight norm's data-dependent initialisation on the batch ``x`` (:mod:`..weight_norm`); does
        nothing without the ``weight_norm`` option."""
        if self.options.weight_norm:
            init_from_batch(self.net, x, labels, weight_norm_scales(self.net))

    def nll(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return mixture.nll(output, x, self.spec.color_levels, self.options.nr_logistic_mix)

    def level_log_probs(self, output: torch.Tensor, x: torch.Tensor, colour: int | None = None) -> torch.Tensor:
        return mixture.level_log_probs(output, x, self.spec.color_levels, self.options.nr_logistic_mix, colour)

    def draw_levels(self, output: torch.Tensor, x: torch.Tensor, colour: int, uniforms: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
        return mixture.draw_levels(output, x, colour, uniforms, self.spec.color_levels,
                                   self.options.nr_logistic_mix, temperature)

    def incremental_sampler(self, labels: torch.Tensor | None, count: int, height: int, width: int):
        """Cached state for the fast sampler: one network step per pixel and a key/value cache per
        attention block (:mod:`.incremental`). The model must be in eval mode."""
        return PixelSNAILIncrementalState(self.net, self.level_log_probs, labels, count, height, width)


class PixelSNAILOverCodes(nn.Module):
    """PixelSNAIL over ``K`` codes: each code read as a learnt ``nr_filters``-wide vector (the
    network's input, keys and values included), ``forward`` giving ``(B, K, 1, H, W)`` logits, whose
    softmax is the likelihood (the host's, as for any model with logits)."""

    reach = UNBOUNDED_REACH
    min_check_size = PixelSNAIL.min_check_size

    def __init__(self, spec: ModelSpec, options: PixelSNAILOptions):
        super().__init__()
        self.spec = spec
        self.options = options
        self.embed = CodeEmbedding(spec.color_levels, options.nr_filters)
        # a condition map: features as wide as the stream, added in every block (models/condition.py)
        dim = options.nr_filters if spec.condition_codes else 0
        self.condition_net = ConditionNet(spec, dim) if dim else None
        self.net = network(spec, options, options.nr_filters, spec.color_levels, dim)

    def condition_features(self, labels: torch.Tensor | None, size: tuple[int, int]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The classes and the condition map's features at ``size`` (``None`` without one) of a packed context."""
        classes, condition = split_context(labels, self.spec)
        return classes, (None if condition is None else self.condition_net(condition, size))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        classes, features = self.condition_features(labels, x.shape[-2:])
        return self.net(self.embed(x), classes, features)[:, :, None]

    def data_init(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """As :meth:`PixelSNAIL.data_init`, on the batch's code vectors (and condition features)."""
        if self.options.weight_norm:
            with torch.no_grad():
                vectors = self.embed(x)
                classes, features = self.condition_features(labels, x.shape[-2:])
            init_from_batch(self.net, vectors, classes, weight_norm_scales(self.net), *([] if features is None else [features]))

    def incremental_sampler(self, labels: torch.Tensor | None, count: int, height: int, width: int):
        """The cached state of :meth:`PixelSNAIL.incremental_sampler`, over code vectors."""
        classes, features = self.condition_features(labels, (height, width))
        return PixelSNAILCodeState(self.net, self.embed, classes, count, height, width, features)


class PixelSNAILPlugin:
    """The built-in model plugin ``pixelsnail`` (``--model pixelsnail``)."""

    name = "pixelsnail"
    description = "PixelSNAIL (Chen et al. 2017): gated resnet blocks and causal self-attention over every earlier pixel"
    options_model: type[BaseModel] = PixelSNAILOptions
    takes_codes = True
    takes_condition = True

    def build(self, options: PixelSNAILOptions, spec: ModelSpec) -> PixelSNAIL | PixelSNAILOverCodes:
        if spec.channels not in (1, 3):
            raise ConfigError(f"pixelsnail models 1 (grey) or 3 (RGB) channels, not {spec.channels}")
        return PixelSNAILOverCodes(spec, options) if spec.codes else PixelSNAIL(spec, options)
