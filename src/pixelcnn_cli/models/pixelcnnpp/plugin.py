"""The model plugin ``pixelcnnpp``: PixelCNN++'s network (:mod:`.net`) with its likelihood, the
discretised logistic mixture (:mod:`..mixture`), and its cached sampler state (:mod:`.incremental`)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ...contracts import ModelSpec
from ...errors import ConfigError
from ..blocks import weight_norm_scales
from ..weight_norm import apply_weight_norm, convolutions, init_from_batch
from .. import mixture
from .incremental import PixelCNNPPIncrementalState
from .net import PixelCNNPPNet


class PixelCNNPPOptions(BaseModel):
    """PixelCNN++'s options; the defaults are the paper's CIFAR-10 model."""

    model_config = ConfigDict(extra="forbid")

    nr_resnet: int = Field(5, ge=1, description="Gated resnet blocks per stage (the paper: 5)")
    nr_filters: int = Field(160, ge=1, description="Feature maps in every block (the paper: 160)")
    nr_logistic_mix: int = Field(10, ge=1, description="Components of the discretised logistic mixture (the paper: 10)")
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout in every block while training (the paper: 0.5)")
    weight_norm: bool = Field(False, description="Weight normalisation, initialised from the first 16 training "
                                                 "images (the paper: on)")


class PixelCNNPP(nn.Module):
    """The network and its likelihood: ``forward`` gives mixture parameters, ``nll`` and
    ``level_log_probs`` say what they mean (the model contract's likelihood methods)."""

    def __init__(self, spec: ModelSpec, options: PixelCNNPPOptions):
        super().__init__()
        self.spec = spec
        self.options = options
        out = mixture.channels_for(spec.channels, options.nr_logistic_mix)
        self.net = PixelCNNPPNet(spec.channels, out, spec.num_classes, options.nr_resnet, options.nr_filters,
                                 options.dropout)
        if options.weight_norm:
            apply_weight_norm(convolutions(self.net))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, labels)

    def data_init(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Weight norm's data-dependent initialisation on the batch ``x`` (:mod:`..weight_norm`); does
        nothing without the ``weight_norm`` option."""
        if self.options.weight_norm:
            init_from_batch(self.net, x, labels, weight_norm_scales(self.net))

    @property
    def reach(self) -> int:
        """Every earlier pixel of a ``(reach + 1)``-square image is in view (``inspect-masks`` checks that square)."""
        return self.net.reach

    def nll(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return mixture.nll(output, x, self.spec.color_levels, self.options.nr_logistic_mix)

    def level_log_probs(self, output: torch.Tensor, x: torch.Tensor, colour: int | None = None) -> torch.Tensor:
        return mixture.level_log_probs(output, x, self.spec.color_levels, self.options.nr_logistic_mix, colour)

    def draw_levels(self, output: torch.Tensor, x: torch.Tensor, colour: int, uniforms: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
        return mixture.draw_levels(output, x, colour, uniforms, self.spec.color_levels,
                                   self.options.nr_logistic_mix, temperature)

    def incremental_sampler(self, labels: torch.Tensor | None, count: int, height: int, width: int):
        """Cached state for the fast sampler: one network step per pixel, every map's cells computed
        once (:mod:`.incremental`). The model must be in eval mode."""
        return PixelCNNPPIncrementalState(self.net, self.level_log_probs, labels, count, height, width)


class PixelCNNPPPlugin:
    """The built-in model plugin ``pixelcnnpp`` (``--model pixelcnnpp``)."""

    name = "pixelcnnpp"
    description = "PixelCNN++ (Salimans et al. 2017): discretised logistic mixture, down/up-sampling streams"
    options_model: type[BaseModel] = PixelCNNPPOptions

    def build(self, options: PixelCNNPPOptions, spec: ModelSpec) -> PixelCNNPP:
        if spec.channels not in (1, 3):
            raise ConfigError(f"pixelcnnpp models 1 (grey) or 3 (RGB) channels, not {spec.channels}")
        return PixelCNNPP(spec, options)
