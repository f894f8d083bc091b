"""Pure construction of PixelCNN masks (no modules, no state).

Pixels are generated in raster order and, inside a pixel, colour by colour (R, then G given
R, then B given R and G). Feature maps are split into one group per data channel so that a
group-``j`` feature only ever sees colours ``<= j`` of the current pixel:

* mask **A** (first layer): at the centre, output group ``j`` sees input groups ``< j``;
* mask **B** (later layers): at the centre, output group ``j`` sees input groups ``<= j``.

Kernel positions before the centre in raster order are fully visible, positions after it
are hidden.
"""

from __future__ import annotations

from typing import Literal

import torch

MaskType = Literal["A", "B"]


def channel_groups(n_features: int, data_channels: int) -> torch.Tensor:
    """Colour group of each of ``n_features`` feature maps: contiguous, as even as possible.

    With ``n_features`` divisible by ``data_channels`` every group has the same size; the
    image itself (``n_features == data_channels``) gets one channel per group.
    """
    if n_features < data_channels:
        raise ValueError(f"{n_features} feature maps cannot hold {data_channels} colour groups")
    return torch.arange(n_features) * data_channels // n_features


def centre_connections(in_groups: torch.Tensor, out_groups: torch.Tensor, mask_type: MaskType) -> torch.Tensor:
    """Boolean ``(out, in)`` matrix: may output feature ``o`` read input feature ``i`` at the centre?"""
    out_g = out_groups[:, None]
    in_g = in_groups[None, :]
    return out_g > in_g if mask_type == "A" else out_g >= in_g


def conv_mask(
    out_channels: int,
    in_channels: int,
    kernel: tuple[int, int],
    centre: tuple[int, int],
    mask_type: MaskType,
    data_channels: int,
    in_groups: torch.Tensor | None = None,
    out_groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weight mask ``(out, in, kh, kw)`` of a causal convolution whose output pixel sits at ``centre``.

    Kernel positions before ``centre`` in raster order are 1, after it 0, and the centre
    follows :func:`centre_connections`.
    """
    kh, kw = kernel
    cy, cx = centre
    mask = torch.zeros(out_channels, in_channels, kh, kw)
    for y in range(kh):
        for x in range(kw):
            if (y, x) < (cy, cx):
                mask[:, :, y, x] = 1.0
    if in_groups is None:
        in_groups = channel_groups(in_channels, data_channels)
    if out_groups is None:
        out_groups = channel_groups(out_channels, data_channels)
    mask[:, :, cy, cx] = centre_connections(in_groups, out_groups, mask_type).float()
    return mask


def spatial_mask(ksize: int, mask_type: MaskType) -> torch.Tensor:
    """The classic 2-D ``ksize x ksize`` mask of a single-channel image (for display)."""
    centre = ksize // 2
    mask = conv_mask(1, 1, (ksize, ksize), (centre, centre), mask_type, 1)
    return mask[0, 0]


def colour_mask(data_channels: int, mask_type: MaskType) -> torch.Tensor:
    """``(out colour, in colour)`` visibility at the centre pixel (for display)."""
    groups = torch.arange(data_channels)
    return centre_connections(groups, groups, mask_type)
