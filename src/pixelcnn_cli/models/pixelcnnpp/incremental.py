"""Cached, incremental evaluation of PixelCNN++ for fast sampling.

In the spirit of Ramachandran et al. 2017 (arXiv 1704.06001), which did this for this
architecture: every cell of every map of :class:`~.net.PixelCNNPPNet` is computed exactly
once per sampling run, at the first moment all its inputs are known, and each convolution keeps
the few rows of its input that later cells still read. Drawing a whole image then costs about
one forward pass of the network on it (plus, per pixel, the output layer and the likelihood),
where the naive sampler runs one full forward pass per pixel and colour.

**When each cell becomes computable.** Sampling visits the input pixels in raster order. From
the network's causality argument (see :mod:`.net`), at scale ``s`` (1, 2 or 4 input
pixels per cell):

* a ``u`` cell ``(p, q)`` reads input rows ``< s*p`` only, so *the whole row* ``p`` is computable
  once input row ``s*p`` begins: the ``u`` stream is computed a row at a time, for every scale
  ``s`` that divides the new row's index (:meth:`PixelCNNPPIncrementalState._u_rows`);
* a ``ul`` cell ``(p, q)`` reads input pixels strictly before ``(s*p, s*q)``: it is computed when
  pixel ``(s*p, s*q)`` is about to be drawn, one cell at a time
  (:meth:`PixelCNNPPIncrementalState._ul_cell`). Pixel ``(i, j)`` thus computes a full-resolution
  cell of every ``ul`` map, plus a half-resolution one when ``i`` and ``j`` are even and a
  quarter-resolution one when both are multiples of 4.

That these times suffice follows the layers one by one: the 2x3 (``u``) and 2x2 (``ul``)
convolutions read the same cell and cells above / to the left, computed earlier; a stride-2
convolution's cell ``(p, q)`` reads cells up to ``(2p, 2q)`` of the finer map, computed at the same
input pixel just before; a transposed (up-sampling) convolution's cell ``(r, c)`` reads only
coarser row ``r // 2`` (``u``) or cell ``(r // 2, c // 2)`` (``ul``), due at input row ``2s*(r//2)``
or pixel ``(2s*(r//2), 2s*(c//2))``, no later than row ``s*r`` or pixel ``(s*r, s*c)``; a ``ul`` block's auxiliary ``u`` input at ``(p, q)`` is from row ``p``, computed when
the row began. A cell event at one scale runs the up pass there, the coarser scale's event when
due, then the down pass, which pops the up-pass cells of the same event (U-net).

**Caches.** Each convolution with a 2-row kernel keeps its input's current and previous row
(plus zero padding columns): the ``u`` ones whole rows, the ``ul`` ones filled cell by cell. The
coarser scales' latest down-pass output rows feed the up-sampling; the input image is kept whole
(it is small). Everything a ``ul`` cell adds that depends on its row only (the auxiliary ``u``
input through its 1x1, the biases, the ``ul`` initial layer's row above) is computed per row.
Memory: a few rows per layer, independent of the image height.

**Cost per pixel** (per image; ``F`` = ``nr_filters``, ``n`` = ``nr_resnet``): every map's cells are
computed once each, so a pixel costs one cell of every full-resolution map, a quarter of one at
half resolution and a sixteenth at quarter resolution. A block pair (``u`` and ``ul``) costs
``36 F^2`` + ``24 F^2`` multiply-adds per cell for its convolutions, up to ``6 F^2`` more for its
1x1s, and a resolution has ``2n + 1`` pairs (up and down pass), so about ``(1 + 1/4 + 1/16) *
(2n + 1) * 63 F^2`` in all (23 M for the paper's n = 5, F = 160), independent of the image size:
the network's cost per output pixel, where the naive sampler pays it for every pixel of the
image at every step. On top of that, the output 1x1 once per pixel and, per colour,
:func:`~..mixture.level_log_probs` on the pixel's parameters (``C x L x K`` values:
colours, levels, components): the network runs once per pixel and the mixture turns its
parameters into each colour's distribution given the colours already drawn (the R -> G -> B
coupling lives there alone, since the network's output at a pixel never depends on that pixel).
With RGB, 256 levels and 10 components that grid, three times per pixel, can cost more than the
network itself. Python's per-operation overhead (a few dozen small operations per block and
pixel) dominates for small models.

The state computes the eval-mode network (dropout off), as the samplers run it; its results
equal a full forward pass up to float rounding (``tests/test_pixelcnnpp_sampling.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...contracts import ColourwiseIncrementalState, PixelOutputState
from ..blocks import GatedResnet
from ..caches import MixtureLogits, push_row, window_matrix
from ..shifts import concat_elu
from .net import STAGES, PixelCNNPPNet


def _label_bias(block: GatedResnet, labels: torch.Tensor | None) -> torch.Tensor | None:
    if block.label_bias is None:
        return None
    return block.label_bias(labels).detach()  # (B, 2F)


class _RowBlock:
    """A ``u``-stream gated resnet block (2x3 down-shifted convolutions), a whole row at a time."""

    def __init__(self, block: GatedResnet, labels: torch.Tensor | None, count: int, width: int):
        w = block.conv_in.weight
        two_f = block.conv_in.in_channels
        self.w_in, self.b_in = w.detach(), block.conv_in.bias.detach()
        self.w_out, self.b_out = block.conv_out.weight.detach(), block.conv_out.bias.detach()
        label = _label_bias(block, labels)
        out_bias = self.b_out.expand(count, -1) if label is None else self.b_out + label
        self.out_bias = out_bias[:, :, None]  # (B, 2F, 1)
        self.aux = None
        if block.nin_aux is not None:
            self.aux = (block.nin_aux.weight.detach()[:, :, 0, 0], block.nin_aux.bias.detach())
        # inputs of the two convolutions, rows p - 1 and p, one zero column each side (kernel width 3)
        self.in_rows = w.new_zeros(count, two_f, 2, width + 2)
        self.mid_rows = w.new_zeros(count, two_f, 2, width + 2)

    def __call__(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output row ``(B, F, W)`` for input row ``x`` (the next row after the last call)."""
        push_row(self.in_rows, concat_elu(x))
        c = F.conv2d(self.in_rows, self.w_in, self.b_in)[:, :, 0]
        if self.aux is not None:
            weight, bias = self.aux
            c = c + F.conv1d(concat_elu(aux), weight[:, :, None], bias)
        push_row(self.mid_rows, concat_elu(c))
        c = F.conv2d(self.mid_rows, self.w_out)[:, :, 0] + self.out_bias
        a, b = c.chunk(2, dim=1)
        return torch.addcmul(x, a, torch.sigmoid(b))


class _CellBlock:
    """A ``ul``-stream gated resnet block (2x2 down-right-shifted convolutions), one cell at a time.

    Its auxiliary input is ``u`` (up pass) or ``cat([u, ul_popped])`` (down pass): the ``u`` part
    comes from the block's row, so :meth:`set_row` folds it (through the 1x1) and the first
    convolution's bias into one per-row term; the popped ``ul`` cell is added per cell.
    """

    def __init__(self, block: GatedResnet, labels: torch.Tensor | None, count: int, width: int, f: int):
        two_f = 2 * f
        self.m_in = window_matrix(block.conv_in.weight)  # (4 * 2F, F)
        self.b_in = block.conv_in.bias.detach()
        self.m_out = window_matrix(block.conv_out.weight)  # (4 * 2F, 2F)
        label = _label_bias(block, labels)
        b_out = block.conv_out.bias.detach()
        self.out_bias = (b_out.expand(count, -1) if label is None else b_out + label).contiguous()
        weight, self.b_aux = block.nin_aux.weight.detach()[:, :, 0, 0], block.nin_aux.bias.detach()
        if weight.shape[1] == two_f:  # aux u: concat_elu(u) = [elu(u), elu(-u)]
            self.m_aux_row, self.m_aux_cell = weight.t().contiguous(), None
        else:
            # aux cat([u, ul]): concat_elu of it is [elu(u), elu(ul), elu(-u), elu(-ul)]; split the
            # 1x1 into its u part (per row) and its ul part (per cell)
            u_part = torch.cat([weight[:, :f], weight[:, two_f : 3 * f]], dim=1)
            ul_part = torch.cat([weight[:, f:two_f], weight[:, 3 * f :]], dim=1)
            self.m_aux_row, self.m_aux_cell = u_part.t().contiguous(), ul_part.t().contiguous()
        # inputs of the two convolutions, channels last: rows p - 1 and p, a zero column on the left
        self.in_rows = self.b_in.new_zeros(count, 2, width + 1, two_f)
        self.mid_rows = self.b_in.new_zeros(count, 2, width + 1, two_f)
        self.row_term = self.b_in.new_zeros(count, width, f)

    def set_row(self, u: torch.Tensor) -> None:
        """A new row begins; ``u`` ``(B, F, W)`` is its auxiliary ``u`` input."""
        for rows in (self.in_rows, self.mid_rows):
            rows[:, 0] = rows[:, 1]
        aux = concat_elu(u.transpose(1, 2), dim=2)  # (B, W, 2F)
        torch.matmul(aux, self.m_aux_row, out=self.row_term)
        self.row_term += self.b_in + self.b_aux

    def __call__(self, q: int, x: torch.Tensor, popped: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output at column ``q`` of the current row ``(B, F)``, for its input cell ``x``."""
        count = x.shape[0]
        self.in_rows[:, 1, q + 1] = concat_elu(x)
        c = torch.addmm(self.row_term[:, q], self.in_rows[:, :, q : q + 2].reshape(count, -1), self.m_in)
        if popped is not None:
            c = torch.addmm(c, concat_elu(popped), self.m_aux_cell)
        self.mid_rows[:, 1, q + 1] = concat_elu(c)
        c = torch.addmm(self.out_bias, self.mid_rows[:, :, q : q + 2].reshape(count, -1), self.m_out)
        a, b = c.chunk(2, dim=1)
        return torch.addcmul(x, a, torch.sigmoid(b))


class _Scale:
    """Everything at one resolution: its blocks (up and down pass, both streams), the caches the
    next coarser scale's stride-2 convolutions read, and its latest down-pass output rows, which
    the next finer scale up-samples."""

    def __init__(self, net: PixelCNNPPNet, k: int, labels, count: int, height: int, width: int):
        f = net.nr_filters
        self.height, self.width = height, width
        down = STAGES - 1 - k  # the down pass runs the coarsest scale first
        self.up = [(_RowBlock(u, labels, count, width), _CellBlock(ul, labels, count, width, f))
                   for u, ul in zip(net.up_u[k], net.up_ul[k])]
        self.down = [(_RowBlock(u, labels, count, width), _CellBlock(ul, labels, count, width, f))
                     for u, ul in zip(net.down_u[down], net.down_ul[down])]
        like = net.out.weight
        if k < STAGES - 1:  # the last up-pass maps, as the next scale's stride-2 convolutions read them
            self.u_last = like.new_zeros(count, f, 2, width + 2)  # a zero column each side (2x3)
            self.ul_last = like.new_zeros(count, 2, width + 1, f)  # channels last, a zero column left (2x2)
        self.u_out = like.new_zeros(count, f, width)  # this scale's down-pass output, current row
        self.ul_out = like.new_zeros(count, width, f)  # the same for ul, filled cell by cell


class PixelCNNPPIncrementalState(MixtureLogits, ColourwiseIncrementalState, PixelOutputState):
    """The caches of a :class:`~.net.PixelCNNPPNet` for one sampling run (see the module
    docstring); ``level_log_probs(params, x, colour=None)`` is the model's likelihood."""

    input_row_offset = 2  # image row r sits at x's row r + 2 (zero rows above it)

    def __init__(self, net: PixelCNNPPNet, level_log_probs: Callable[..., torch.Tensor],
                 labels: torch.Tensor | None, count: int, height: int, width: int):
        if net.training:
            raise ValueError("incremental sampling computes the eval-mode network (dropout off): call model.eval() first")
        if (labels is None) != (net.num_classes == 0):
            raise ValueError(f"labels must be given exactly when num_classes > 0 (num_classes={net.num_classes})")
        if labels is not None and labels.shape != (count,):
            raise ValueError(f"labels must hold one class per image ({count}); got {tuple(labels.shape)}")
        self.count, self.height, self.width = count, height, width
        self.channels = net.channels
        self.level_log_probs = level_log_probs
        self.row = 0
        self._next_col = 0  # the next column of the current row whose ul cells are not computed yet
        self._params: torch.Tensor | None = None  # the mixture parameters of column _next_col - 1
        with torch.no_grad():  # inference only, whoever calls it
            self._build(net, labels)
            self._u_rows(0)

    def _build(self, net: PixelCNNPPNet, labels) -> None:
        count, height, width = self.count, self.height, self.width
        sizes = [(height, width)]
        for _ in range(STAGES - 1):  # stride-2 convolutions give ceil(n / 2)
            h, w = sizes[-1]
            sizes.append(((h + 1) // 2, (w + 1) // 2))
        self.scales = [_Scale(net, k, labels, count, h, w) for k, (h, w) in enumerate(sizes)]
        like = net.out.weight
        # the input with its ones channel: image (r, c) at (r + 2, c + 1), zeros around it (two
        # rows above for the 2x3 initial u convolution, a column each side for its width)
        self.x = like.new_zeros(count, self.channels + 1, height + 2, width + 2)
        self.x[:, self.channels, 2:, 1 : width + 1] = 1
        self.u_init = (net.u_init.weight.detach(), net.u_init.bias.detach())
        self.ul_init_up = (net.ul_init_up.weight.detach(), net.ul_init_up.bias.detach())
        left = net.ul_init_left.weight  # (F, C + 1, 2, 1) over rows i - 1, i of column j - 1
        self.ul_init_left = (left.detach().reshape(left.shape[0], -1).t().contiguous(), net.ul_init_left.bias.detach())
        self.ul_init_row = like.new_zeros(count, width, net.nr_filters)  # the row-above term, current row
        self.down_u = [(c.weight.detach(), c.bias.detach()) for c in net.down_u_conv]
        self.down_ul = [(window_matrix(c.weight), c.bias.detach()) for c in net.down_ul_conv]
        self.up_u = list(net.up_u_conv)  # run as modules on single rows (they crop as the network does)
        # transposed 2x2, stride 2: output (r, c) = bias + input(r // 2, c // 2) @ weight[:, :, r % 2, c % 2]
        self.up_ul = [(c.weight.detach().permute(2, 3, 0, 1).contiguous(), c.bias.detach()) for c in net.up_ul_conv]
        self.out = (net.out.weight.detach()[:, :, 0, 0].t().contiguous(), net.out.bias.detach())

    # -- the u stream, a row at a time --------------------------------------------------------

    def _u_rows(self, i: int) -> None:
        """Input row ``i`` begins (rows above it known): compute row ``i / s`` of the u stream at every
        scale ``s`` dividing ``i`` and give the ul blocks there their per-row terms."""
        if i == 0:
            u = self.x.new_zeros(self.count, self.u_init[0].shape[0], self.width)  # the down shift's zero row
        else:  # rows i - 2, i - 1 (the down shift)
            u = F.conv2d(self.x[:, :, i : i + 2], *self.u_init)[:, :, 0]
        # ul's initial layer reads the row above (1x3, then the down shift) as a whole row
        if i == 0:
            self.ul_init_row.zero_()
        else:
            self.ul_init_row.copy_(F.conv2d(self.x[:, :, i + 1 : i + 2], *self.ul_init_up)[:, :, 0].transpose(1, 2))
        self._u_scale(0, i, u)

    def _u_scale(self, k: int, p: int, u: torch.Tensor) -> None:
        """Row ``p`` of scale ``k``, given its first up-pass map ``u`` ``(B, F, W_k)``: the up pass, the
        coarser scales when due, the down pass."""
        scale = self.scales[k]
        stack = [u]
        for u_block, ul_block in scale.up:
            u = u_block(u)
            ul_block.set_row(u)
            stack.append(u)
        if k < STAGES - 1:
            push_row(scale.u_last, u)
            if p % 2 == 0:  # coarser row p / 2 reads this scale's rows p - 1, p
                self._u_scale(k + 1, p // 2, F.conv2d(scale.u_last, *self.down_u[k], stride=(1, 2))[:, :, 0])
            # the coarser down-pass row p // 2, up-sampled: its rows 2 (p // 2) and 2 (p // 2) + 1
            up = self.up_u[STAGES - 2 - k](self.scales[k + 1].u_out[:, :, None])
            u = up[:, :, p % 2, : scale.width]
        else:
            u = stack.pop()
        for u_block, ul_block in scale.down:
            u = u_block(u, stack.pop())
            ul_block.set_row(u)
        scale.u_out.copy_(u)

    # -- the ul stream, a cell at a time ------------------------------------------------------

    def _ul_cell(self, k: int, p: int, q: int, ul: torch.Tensor) -> torch.Tensor:
        """Cell ``(p, q)`` of scale ``k``, given its first up-pass ``ul`` cell ``(B, F)``: the up pass, the
        coarser scales when due, the down pass; returns the down-pass output ``(B, F)``."""
        scale = self.scales[k]
        stack = [ul]
        for _, ul_block in scale.up:
            ul = ul_block(q, ul)
            stack.append(ul)
        if k < STAGES - 1:
            last = scale.ul_last
            if q == 0:
                last[:, 0] = last[:, 1]
            last[:, 1, q + 1] = ul
            coarse = self.scales[k + 1]
            if p % 2 == 0 and q % 2 == 0:  # coarser cell (p / 2, q / 2) reads cells up to (p, q) here
                matrix, bias = self.down_ul[k]
                first = torch.addmm(bias, last[:, :, q : q + 2].reshape(self.count, -1), matrix)
                coarse.ul_out[:, q // 2] = self._ul_cell(k + 1, p // 2, q // 2, first)
            weight, bias = self.up_ul[STAGES - 2 - k]
            ul = torch.addmm(bias, coarse.ul_out[:, q // 2], weight[p % 2, q % 2])
        else:
            ul = stack.pop()
        for _, ul_block in scale.down:
            ul = ul_block(q, ul, stack.pop())
        return ul

    def _ul_pixel(self, j: int) -> torch.Tensor:
        """Every ul map's cells due at pixel ``(row, j)`` (pixels before it known); the output ``ul``."""
        i = self.row
        first = self.ul_init_row[:, j]
        if j > 0:  # (i - 1, j - 1) and (i, j - 1), through the 2x1 and the right shift
            matrix, bias = self.ul_init_left
            first = torch.addmm(first + bias, self.x[:, :, i + 1 : i + 3, j].reshape(self.count, -1), matrix)
        return self._ul_cell(0, i, j, first)

    # -- the sampler protocol ---------------------------------------------------------------------

    def _advance(self, col: int) -> torch.Tensor | None:
        """Compute the ul cells of the current row up to column ``col`` (earlier pixels written)."""
        ul = None
        for j in range(self._next_col, col + 1):
            ul = self._ul_pixel(j)
        self._next_col = max(self._next_col, col + 1)
        return ul

    @torch.no_grad()
    def end_row(self, row: torch.Tensor) -> None:
        if self.row >= self.height:
            raise RuntimeError("end_row called after the last row")
        if self.row == self.height - 1:  # nothing reads the last row's cells
            self.row += 1
            return
        self.x[:, : self.channels, self.row + 2, 1 : self.width + 1] = row
        self._advance(self.width - 1)  # cells of columns not sampled (a kept row, in image completion)
        self.row += 1
        self._next_col, self._params = 0, None
        self._u_rows(self.row)
