"""``classic``: the original PixelCNN (van den Oord, Kalchbrenner, Kavukcuoglu 2016, arXiv 1601.06759).

A ``causal_ksize`` x ``causal_ksize`` mask-A convolution to ``2h`` feature maps, then
``hidden_layers`` residual blocks (ReLU -> 1x1 ``2h -> h`` -> ReLU -> ``hidden_ksize`` mask-B
convolution -> ReLU -> 1x1 ``h -> 2h``, plus the block's input), then ReLU -> 1x1 -> ReLU -> 1x1
to ``channels x color_levels`` logits. Feature maps are split into colour groups, so with three
channels R is predicted first, then G given R, then B given R and G.

There is a single stack of masked convolutions and no separate vertical stack, which is why it
has the **blind spot** the Gated PixelCNN (arXiv 1606.05328) was designed to remove: each
layer's view grows up, left and right by ``hidden_ksize // 2`` but only from the rows it already
sees, so a wedge of pixels above and to the right of the current one is never seen. It is still
strictly causal. ``pixelcnn inspect-masks --model classic`` draws the wedge next to the gated
model's full view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from pixelcnn_cli import ConfigError, MaskedConv2d, ModelSpec, OutputHead, conv_mask, masked_1x1

__version__ = "0.1.0"


class ClassicOptions(BaseModel):
    """The classic PixelCNN's shape; names and meanings follow pixelcnn's architecture flags."""

    model_config = ConfigDict(extra="forbid")

    causal_ksize: int = Field(7, description="Kernel size of the first (mask A) convolution; odd, at least 3")
    hidden_ksize: int = Field(3, description="Kernel size of the mask-B convolution in each residual block")
    hidden_fmaps: int = Field(30, gt=0, description="h: feature maps inside a residual block (the blocks carry 2h)")
    out_hidden_fmaps: int = Field(10, gt=0, description="Feature maps of the output block")
    hidden_layers: int = Field(6, ge=1, description="Number of residual blocks")

    @field_validator("causal_ksize")
    @classmethod
    def _causal(cls, value: int) -> int:
        # A 1x1 mask-A kernel shows each pixel only the earlier colours of itself, and the
        # mask-B layers only spread what the first layer saw: the last colour of every earlier
        # pixel (for grey images, every earlier pixel) would never be seen.
        if value < 3 or value % 2 == 0:
            why = (": a 1x1 mask-A kernel leaves the model blind to every earlier pixel "
                   "(to their last colour, for RGB)") if value == 1 else ""
            raise ValueError(f"must be an odd number of at least 3 (got {value}){why}")
        return value

    @field_validator("hidden_ksize")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value < 1 or value % 2 == 0:
            raise ValueError(f"must be a positive odd number (got {value})")
        return value


def _padded_conv(in_channels: int, out_channels: int, ksize: int, mask_type: str, data_channels: int) -> MaskedConv2d:
    centre = ksize // 2
    mask = conv_mask(out_channels, in_channels, (ksize, ksize), (centre, centre), mask_type, data_channels)
    return MaskedConv2d(in_channels, out_channels, (ksize, ksize), mask)


class ResidualBlock(nn.Module):
    """ReLU -> 1x1 (2h -> h) -> ReLU -> k x k mask B -> ReLU -> 1x1 (h -> 2h), added to the input (fig. 5)."""

    def __init__(self, h: int, ksize: int, data_channels: int, num_classes: int):
        super().__init__()
        self.pad = ksize // 2
        self.relu = nn.ReLU()  # modules, not F.relu: the causality check makes them leaky
        self.reduce = masked_1x1(2 * h, h, data_channels)
        self.conv = _padded_conv(h, h, ksize, "B", data_channels)
        self.expand = masked_1x1(h, 2 * h, data_channels)
        # A class adds the same bias at every pixel: it carries no pixel's value, so it is causal.
        self.label_bias = nn.Embedding(num_classes, h) if num_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        y = self.reduce(self.relu(x))
        y = self.conv(F.pad(self.relu(y), (self.pad,) * 4))
        if self.label_bias is not None and labels is not None:
            y = y + self.label_bias(labels)[:, :, None, None]
        return x + self.expand(self.relu(y))


class ClassicPixelCNN(nn.Module):
    """The original PixelCNN; ``forward(x, labels)`` returns logits ``(B, color_levels, C, H, W)``."""

    #: Read by ``pixelcnn inspect-masks``: blind spots are expected, future dependencies are not.
    has_blind_spot = True

    def __init__(self, spec: ModelSpec, options: ClassicOptions):
        super().__init__()
        self.spec = spec
        self.options = options
        c, h = spec.channels, options.hidden_fmaps
        self.causal_pad = options.causal_ksize // 2
        self.causal = _padded_conv(c, 2 * h, options.causal_ksize, "A", c)
        self.blocks = nn.ModuleList(ResidualBlock(h, options.hidden_ksize, c, spec.num_classes)
                                    for _ in range(options.hidden_layers))
        self.head = OutputHead(2 * h, options.out_hidden_fmaps, c, spec.color_levels)  # ReLU-1x1-ReLU-1x1

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.causal(F.pad(x, (self.causal_pad,) * 4))
        for block in self.blocks:
            x = block(x, labels)
        return self.head(x)

    @property
    def reach(self) -> int:
        """How far (in pixels) the receptive field extends up and to the left; the blind spot lies within it."""
        return self.options.causal_ksize // 2 + self.options.hidden_layers * (self.options.hidden_ksize // 2)


class ClassicPixelCNNPlugin:
    """The ``classic`` model plugin."""

    name = "classic"
    description = "The original PixelCNN (arXiv 1601.06759): mask A, mask-B residual blocks, with its blind spot"
    options_model = ClassicOptions

    def build(self, options: ClassicOptions, spec: ModelSpec) -> ClassicPixelCNN:
        c = spec.channels
        if options.hidden_fmaps < c:
            raise ConfigError(f"hidden_fmaps: must be at least the {c} data channels (got {options.hidden_fmaps})")
        if options.out_hidden_fmaps < c:
            raise ConfigError(f"out_hidden_fmaps: must be at least the {c} data channels (got {options.out_hidden_fmaps})")
        return ClassicPixelCNN(spec, options)
