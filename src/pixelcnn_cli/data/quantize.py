"""Quantisation between 8-bit pixels and ``color_levels`` levels, on whole batches.

``floor(v * L / 256)`` gives equal-width bins (the identity for L = 256, a threshold at 128
for L = 2); level k is shown as ``round(k * 255 / (L - 1))``. Codes (a dataset of ``K``
unordered categories) are levels already: :func:`data_levels` passes them through.
"""

from __future__ import annotations

import torch

from ..errors import DataError


def to_levels(images: torch.Tensor, color_levels: int) -> torch.Tensor:
    """``uint8`` images -> ``long`` levels in ``[0, color_levels)``."""
    return torch.div(images.long() * color_levels, 256, rounding_mode="floor")


def data_levels(values: torch.Tensor, color_levels: int, codes: bool) -> torch.Tensor:
    """A batch as the dataset gave it -> ``long`` levels: ``uint8`` pixels quantised, codes as they are."""
    if codes:
        return values.long()
    if values.dtype != torch.uint8:
        raise DataError(f"dataset items must be uint8 images, got {values.dtype}")
    return to_levels(values, color_levels)


def levels_to_input(levels: torch.Tensor, color_levels: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Levels -> the model's input scale, [-1, 1]."""
    return levels.to(dtype) * (2.0 / (color_levels - 1)) - 1.0


def levels_to_uint8(levels: torch.Tensor, color_levels: int) -> torch.Tensor:
    """Levels -> 8-bit pixel values for pictures."""
    return torch.round(levels.float() * (255.0 / (color_levels - 1))).to(torch.uint8)
