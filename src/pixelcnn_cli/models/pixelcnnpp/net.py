"""PixelCNN++ (Salimans et al. 2017, arXiv 1701.05517): the network (:mod:`.plugin` pairs it with its
likelihood, :mod:`..mixture`).

Architecture: the input gets a constant channel of ones (so the zeros that padding and shifts
bring in differ from data), then two streams: ``u`` sees the rows above a pixel, ``ul`` the rows
above and the pixels to its left. An up pass of 3 stages (``nr_resnet`` gated resnet blocks each,
a stride-2 down-sampling between stages) pushes every map onto two stacks; a down pass of 3 stages
(``nr_resnet``, then ``nr_resnet + 1`` blocks, a stride-2 transposed up-sampling between stages)
pops them as the blocks' auxiliary inputs (U-net style). Output: ``nin(elu(ul))``, in fp32 even
under autocast.

Causality, by induction over layers, for a map at scale ``s`` (1, 2 or 4 input pixels per cell):
a ``u`` cell ``(p, q)`` depends only on input rows ``< s*p``; a ``ul`` cell ``(p, q)`` only on input
pixels strictly before ``(s*p, s*q)`` in raster order. The initial layers set this up with one
shift each; the 2x3 (u) and 2x2 (ul) convolutions read only the cell itself and cells above / to
the left, which satisfy a stronger condition; a stride-2 convolution reading cells ``2p-1, 2p``
lands exactly on the boundary ``2s*p``; a stride-2 transposed one writes cell ``p`` to ``2p, 2p+1``,
whose boundaries are at or after the old one; cropping drops only cells at the bottom/right; and
``u`` feeds ``ul`` at the same cell (u's condition implies ul's). At scale 1 the ul condition is
the autoregressive order: the output at ``(i, j)`` sees every channel of earlier pixels only.

Initialisation: plain PyTorch initialisation plus a scaled-down last conv per block (see
:class:`GatedResnet`) by default; with the ``weight_norm`` option the paper's weight normalisation
and data-dependent initialisation instead (:mod:`..weight_norm`, scales from
:func:`..blocks.weight_norm_scales`).
"""

from __future__ import annotations

import torch
from torch import nn

from ...autocast import in_fp32
from ..blocks import DownRightShiftedConv2d, DownShiftedConv2d, GatedResnet, nin
from ..shifts import elu, shift_down, shift_right


#: Number of resolutions (the paper's 32, 16, 8 for CIFAR-10).
STAGES = 3


class DownShiftedConvTranspose2d(nn.ConvTranspose2d):
    """Up-sampling by 2: input ``(p, q)`` writes output rows ``2p .. 2p+kh-1`` (kept: ``2p, 2p+1``
    for kh=2) and columns ``2q-(kw-1)//2 ..``, centred. Rows written at ``2p`` and below keep the
    ``u`` condition; the extra rows at the bottom and the columns hanging over either side are
    cropped so the output is exactly ``2H x 2W``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int] = (2, 3)):
        super().__init__(in_channels, out_channels, kernel, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        left = (self.kernel_size[1] - 1) // 2
        return super().forward(x)[:, :, : 2 * h, left : left + 2 * w]


class DownRightShiftedConvTranspose2d(nn.ConvTranspose2d):
    """Up-sampling by 2: input ``(p, q)`` writes output ``(2p + a, 2q + b)``, ``a, b >= 0``: cells at or
    after its own top-left corner, so the ``ul`` condition holds; the extra rows at the bottom and
    columns on the right (none for a 2x2 kernel) are cropped."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int] = (2, 2)):
        super().__init__(in_channels, out_channels, kernel, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        return super().forward(x)[:, :, : 2 * h, : 2 * w]


class PixelCNNPPNet(nn.Module):
    """PixelCNN++'s two-stream U-net: ``B x channels x H x W`` in [-1, 1] -> ``B x out_channels x H x W``,
    the output at ``(i, j)`` a function of the input pixels strictly before ``(i, j)`` in raster
    order (all their channels) only. Any ``H, W >= 1``.

    ``reach = 4 * nr_resnet + 2``: every earlier pixel of a ``(reach + 1)``-square image is in view,
    and of no larger square (so the paper's default, reach 22, leaves blind spots on 32x32 images).
    The limit is set by the odd rows at full resolution: for ``i = 2p + 1`` the half-resolution
    ``u`` cell ``p`` sees rows ``< 2p`` and the ``ul`` cell only up to ``(2p, 2q)``, so the row above
    to the right and the own row to the left come from full-resolution layers alone: 1 column from
    the initial layer, 2 per up-pass block, then 1 where that block's output joins the down pass as
    aux (a 1x1 into the block's second convolution only) and 2 per remaining down-pass block.
    (Checked by gradients for ``nr_resnet`` 1, 2 and 3 in the tests, and once for 5 on 32x32:
    1440 unseen (output, earlier input) pairs, exactly the ones this predicts.)
    """

    def __init__(self, channels: int, out_channels: int, num_classes: int = 0, nr_resnet: int = 5,
                 nr_filters: int = 160, dropout: float = 0.5):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels
        self.num_classes = num_classes
        self.nr_resnet = nr_resnet
        self.nr_filters = nr_filters
        self.reach = 4 * nr_resnet + 2
        f = nr_filters
        cin = channels + 1  # the ones channel

        # Initial layers: each convolution includes the pixel's own row (and column), one shift
        # takes it out. u: 2x3 then down -> rows i-2, i-1. ul: row i-1 (1x3, down) plus
        # (i-1, j-1) and (i, j-1) (2x1, right).
        self.u_init = DownShiftedConv2d(cin, f, (2, 3))
        self.ul_init_up = DownShiftedConv2d(cin, f, (1, 3))
        self.ul_init_left = DownRightShiftedConv2d(cin, f, (2, 1))

        def block(conv, aux):
            return GatedResnet(f, conv, aux, num_classes, dropout)

        def stage(depth: int, u_aux: int, ul_aux: int) -> tuple[nn.ModuleList, nn.ModuleList]:
            return (nn.ModuleList(block(DownShiftedConv2d, u_aux) for _ in range(depth)),
                    nn.ModuleList(block(DownRightShiftedConv2d, ul_aux) for _ in range(depth)))

        # Up pass: u blocks alone, ul blocks with the u of the same block as aux.
        up = [stage(nr_resnet, 0, f) for _ in range(STAGES)]
        self.up_u = nn.ModuleList(u for u, _ in up)
        self.up_ul = nn.ModuleList(ul for _, ul in up)
        self.down_u_conv = nn.ModuleList(DownShiftedConv2d(f, f, (2, 3), stride=2) for _ in range(STAGES - 1))
        self.down_ul_conv = nn.ModuleList(DownRightShiftedConv2d(f, f, (2, 2), stride=2) for _ in range(STAGES - 1))

        # Down pass: u blocks with the popped u as aux, ul blocks with cat([u, popped ul]).
        down = [stage(nr_resnet + (k > 0), f, 2 * f) for k in range(STAGES)]
        self.down_u = nn.ModuleList(u for u, _ in down)
        self.down_ul = nn.ModuleList(ul for _, ul in down)
        self.up_u_conv = nn.ModuleList(DownShiftedConvTranspose2d(f, f, (2, 3)) for _ in range(STAGES - 1))
        self.up_ul_conv = nn.ModuleList(DownRightShiftedConvTranspose2d(f, f, (2, 2)) for _ in range(STAGES - 1))

        self.out = nin(f, out_channels)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if (labels is None) != (self.num_classes == 0):
            raise ValueError(f"labels must be given exactly when num_classes > 0 (num_classes={self.num_classes})")
        # Padding and shifts bring in zeros; the ones channel lets the network tell them from
        # data that happens to be 0 (mid-grey), e.g. to know where the image border is.
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)

        u_list = [shift_down(self.u_init(x))]
        ul_list = [shift_down(self.ul_init_up(x)) + shift_right(self.ul_init_left(x))]
        for k in range(STAGES):
            for u_block, ul_block in zip(self.up_u[k], self.up_ul[k]):
                u_list.append(u_block(u_list[-1], labels=labels))
                ul_list.append(ul_block(ul_list[-1], u_list[-1], labels))
            if k < STAGES - 1:
                u_list.append(self.down_u_conv[k](u_list[-1]))
                ul_list.append(self.down_ul_conv[k](ul_list[-1]))

        u, ul = u_list.pop(), ul_list.pop()
        for k in range(STAGES):
            if k > 0:
                # Up-sampled maps are 2 * ceil(n / 2) >= n: crop the extra bottom row / right
                # column (future cells) to the size of the map they join.
                h, w = u_list[-1].shape[2], u_list[-1].shape[3]
                u = self.up_u_conv[k - 1](u)[:, :, :h, :w]
                ul = self.up_ul_conv[k - 1](ul)[:, :, :h, :w]
            for u_block, ul_block in zip(self.down_u[k], self.down_ul[k]):
                u = u_block(u, u_list.pop(), labels)
                ul = ul_block(ul, torch.cat([u, ul_list.pop()], dim=1), labels)
        assert not u_list and not ul_list, "every map of the up pass is used once in the down pass"
        # fp32 under autocast too: the mixture's means and log-scales, rounded to bf16, would move
        # by a sizeable part of a 256-level bin (pixelcnn_cli.autocast)
        return in_fp32(self.out, elu(ul))
