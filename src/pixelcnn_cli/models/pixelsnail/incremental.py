"""Cached, incremental evaluation of PixelSNAIL for fast sampling: one network step per pixel.

The naive sampler runs the whole network (attention over every pair of pixels included) once per
pixel and colour. Here each pixel's cells are computed once, when it is about to be drawn:

* **the stream** (:class:`~.net.PixelSNAILNet` has one, at full resolution): the first layer's
  row-above term once per row, its left term per cell; every 2x2 down-right-shifted convolution
  from a cache of its input's previous and current row (as PixelCNN++'s cached ``ul`` stream);
  the 1x1 blocks per cell;
* **attention**: a **key/value cache** per attention block. Pixel ``n``'s query (from the stream
  at ``n``) attends over the keys and values of pixels ``0 .. n-1``; pixel ``n``'s own key and
  value need its drawn colours (the keys read the raw input), so they are computed once the pixel
  is drawn, just before the next pixel's step (or when its row ends), from the stream cell kept
  for it. Pixel 0 attends to nothing and gets zero, as in the network.

Memory: two rows per convolution, and per attention block ``H * W * (key_size + value_size)``
values per image (the cache). Cost per pixel: one cell of every layer, plus one attention row
over the pixels so far (``n * (key_size + value_size)`` multiply-adds per block), where the naive
sampler pays the whole network on the whole image at every step.

The state computes the eval-mode network (dropout off), as the samplers run it; its results equal
a full forward pass up to float rounding (``tests/test_pixelsnail_sampling.py``). Over codes
(:class:`PixelSNAILCodeState`) the input buffer holds each drawn code's vector, and a pixel's
output is its K logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...contracts import ColourwiseIncrementalState, IncrementalState, PixelOutputState
from ..blocks import GatedResnet
from ..caches import MixtureLogits, window_matrix
from ..shifts import elu
from .net import AttentionBlock, PixelSNAILNet, positions


class _Resnet:
    """A gated resnet block one cell at a time: 2x2 down-right-shifted convolutions (kept rows of
    their inputs, channels last, a zero column on the left) or 1x1s (no cache)."""

    def __init__(self, block: GatedResnet, labels: torch.Tensor | None, count: int, width: int):
        self.act = block.act
        self.m_in, self.b_in = window_matrix(block.conv_in.weight), block.conv_in.bias.detach()
        self.m_out = window_matrix(block.conv_out.weight)
        b_out = block.conv_out.bias.detach()
        label = None if block.label_bias is None else block.label_bias(labels).detach()
        self.out_bias = (b_out.expand(count, -1) if label is None else b_out + label).contiguous()
        # a condition map: the block's 1x1 of the features, applied to the pixel's cell of them
        self.condition = None if block.condition_bias is None else block.condition_bias.matrix()
        self.aux = None
        if block.nin_aux is not None:
            self.aux = (window_matrix(block.nin_aux.weight), block.nin_aux.bias.detach())
        self.window = block.conv_in.kernel_size == (2, 2)
        if self.window:
            self.in_rows = self.b_in.new_zeros(count, 2, width + 1, self.m_in.shape[0] // 4)
            self.mid_rows = self.b_in.new_zeros(count, 2, width + 1, self.m_out.shape[0] // 4)

    def new_row(self) -> None:
        if self.window:
            for rows in (self.in_rows, self.mid_rows):
                rows[:, 0] = rows[:, 1]

    def _conv(self, rows: torch.Tensor | None, q: int, cell: torch.Tensor, bias: torch.Tensor, matrix: torch.Tensor):
        if rows is None:
            return torch.addmm(bias, cell, matrix)
        rows[:, 1, q + 1] = cell
        return torch.addmm(bias, rows[:, :, q : q + 2].reshape(cell.shape[0], -1), matrix)

    def __call__(self, q: int, x: torch.Tensor, aux: torch.Tensor | None = None,
                 condition: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output at column ``q`` of the current row, ``(B, C)``, for its input cell ``x``
        (and the condition features' cell ``condition``, ``(B, dim)``, for a conditioned block)."""
        c = self._conv(self.in_rows if self.window else None, q, self.act(x), self.b_in, self.m_in)
        if self.aux is not None:
            matrix, bias = self.aux
            c = torch.addmm(c + bias, self.act(aux), matrix)
        c = self._conv(self.mid_rows if self.window else None, q, self.act(c), self.out_bias, self.m_out)
        if self.condition is not None and condition is not None:
            matrix, bias = self.condition
            c = torch.addmm(c + bias, condition, matrix)
        a, b = c.chunk(2, dim=1)
        return torch.addcmul(x, a, torch.sigmoid(b))


class _Attention:
    """An attention block: its three 1x1 resnet blocks per cell and the key/value cache."""

    def __init__(self, block: AttentionBlock, labels, count: int, pixels: int):
        self.key_size, self.value_size = block.key_size, block.value_size
        self.kv_block, self.q_block = _Resnet(block.kv_block, labels, count, 0), _Resnet(block.q_block, labels, count, 0)
        self.out_block = _Resnet(block.out_block, labels, count, 0)
        self.kv = (window_matrix(block.kv.weight), block.kv.bias.detach())
        self.q = (window_matrix(block.q.weight), block.q.bias.detach())
        like = self.kv[1]
        self.keys = like.new_zeros(count, pixels, self.key_size)
        self.values = like.new_zeros(count, pixels, self.value_size)
        self.stream = like.new_zeros(count, pixels, self.q[0].shape[0] - 2)  # the stream entering, per pixel

    def __call__(self, n: int, ul: torch.Tensor, position: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output at pixel ``n`` (keys and values of pixels before it cached)."""
        self.stream[:, n] = ul
        if n == 0:  # nothing before the first pixel: it attends to nothing and gets zero
            mixed = ul.new_zeros(ul.shape[0], self.value_size)
        else:
            matrix, bias = self.q
            query = torch.addmm(bias, self.q_block(0, torch.cat([ul, position], dim=1), condition=condition), matrix)
            mixed = F.scaled_dot_product_attention(query[:, None, None], self.keys[:, None, :n],
                                                   self.values[:, None, :n])[:, 0, 0]
        return self.out_block(0, ul, mixed, condition)

    def remember(self, n: int, x: torch.Tensor, position: torch.Tensor, condition: torch.Tensor | None = None) -> None:
        """Pixel ``n`` is drawn (its input cell ``x``, ``(B, C)``): its key and value join the cache."""
        matrix, bias = self.kv
        kv = torch.addmm(bias, self.kv_block(0, torch.cat([x, self.stream[:, n], position], dim=1), condition=condition),
                         matrix)
        self.keys[:, n], self.values[:, n] = kv[:, : self.key_size], kv[:, self.key_size :]


class _Stream:
    """The caches of a :class:`~.net.PixelSNAILNet` for one sampling run (see the module
    docstring): the stream cell by cell, the key/value caches, the rows given by ``end_row``.
    ``embed`` turns the rows given (on the input scale) into the network's input (codes' vectors)."""

    input_row_offset = 1  # image row r sits at x's row r + 1 (zero rows above it)

    def __init__(self, net: PixelSNAILNet, labels: torch.Tensor | None, count: int, height: int, width: int,
                 embed: Callable[[torch.Tensor], torch.Tensor] | None = None, condition: torch.Tensor | None = None):
        if net.training:
            raise ValueError("incremental sampling computes the eval-mode network (dropout off): call model.eval() first")
        if (labels is None) != (net.num_classes == 0):
            raise ValueError(f"labels must be given exactly when num_classes > 0 (num_classes={net.num_classes})")
        if labels is not None and labels.shape != (count,):
            raise ValueError(f"labels must hold one class per image ({count}); got {tuple(labels.shape)}")
        self.count, self.height, self.width, self.channels = count, height, width, net.channels
        self.embed = embed
        # a condition map's features (B, dim, H, W), one cell per pixel: (B, H * W, dim)
        self.condition = None if condition is None else condition.detach().flatten(2).transpose(1, 2).contiguous()
        self.row, self._next_col, self._remembered = 0, 0, 0
        self._params: torch.Tensor | None = None
        with torch.no_grad():
            weight = net.out.weight
            # the input with its ones channel, a zero row on top and a zero column each side
            self.x = weight.new_zeros(count, net.channels + 1, height + 1, width + 2)
            self.x[:, net.channels, 1:, 1 : width + 1] = 1
            self.position = positions(height, width, weight).flatten(2)[0].t().contiguous()  # (H*W, 2)
            up, left = net.ul_init_up, net.ul_init_left
            self.init_up = (up.weight.detach(), up.bias.detach())
            self.init_left = (window_matrix(left.weight), left.bias.detach())
            self.resnets = [[_Resnet(b, labels, count, width) for b in blocks] for blocks in net.resnets]
            self.attention = [_Attention(a, labels, count, height * width) for a in net.attention]
            self.out = (window_matrix(net.out.weight), net.out.bias.detach())
            self._start_row()

    def _start_row(self) -> None:
        """The first layer's row-above term of the current row: zero on row 0 (the shift brings zeros)."""
        if self.row == 0:
            self.up_term = self.x.new_zeros(self.count, self.width, self.init_up[0].shape[0])
        else:
            weight, bias = self.init_up  # the 1x3 on the row above (padded), then the shift down
            self.up_term = F.conv2d(self.x[:, :, self.row : self.row + 1], weight, bias)[:, :, 0].transpose(1, 2)
        for blocks in self.resnets:
            for block in blocks:
                block.new_row()

    def _pixel(self, j: int) -> torch.Tensor:
        """The stream's last cell at pixel ``(row, j)`` (every earlier pixel drawn and remembered)."""
        i, n = self.row, self.row * self.width + j
        ul = self.up_term[:, j]
        if j > 0:  # (i - 1, j - 1) and (i, j - 1) through the 2x1, then the shift right
            matrix, bias = self.init_left
            ul = torch.addmm(ul + bias, self.x[:, :, i : i + 2, j].transpose(1, 2).reshape(self.count, -1), matrix)
        position = self.position[n].expand(self.count, -1)
        condition = None if self.condition is None else self.condition[:, n]
        for blocks, attention in zip(self.resnets, self.attention):
            for block in blocks:
                ul = block(j, ul, condition=condition)
            ul = attention(n, ul, position, condition)
        return ul

    def _remember_up_to(self, n: int) -> None:
        """Keys and values of the pixels before ``n`` (drawn by now) into every attention cache."""
        for m in range(self._remembered, n):
            i, j = divmod(m, self.width)
            cell = self.x[:, : self.channels, i + 1, j + 1]
            position = self.position[m].expand(self.count, -1)
            condition = None if self.condition is None else self.condition[:, m]
            for attention in self.attention:
                attention.remember(m, cell, position, condition)
        self._remembered = max(self._remembered, n)

    def _advance(self, col: int) -> torch.Tensor | None:
        ul = None
        for j in range(self._next_col, col + 1):
            self._remember_up_to(self.row * self.width + j)
            ul = self._pixel(j)
        self._next_col = max(self._next_col, col + 1)
        return ul

    @torch.no_grad()
    def end_row(self, row: torch.Tensor) -> None:
        if self.row >= self.height:
            raise RuntimeError("end_row called after the last row")
        self.x[:, : self.channels, self.row + 1, 1 : self.width + 1] = self._as_input(row)
        if self.row == self.height - 1:  # nothing reads the last row's cells
            self.row += 1
            return
        self._advance(self.width - 1)  # cells of columns not sampled (a kept row, in image completion)
        self._remember_up_to((self.row + 1) * self.width)
        self.row += 1
        self._next_col, self._params = 0, None
        self._start_row()

    def _as_input(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels if self.embed is None else self.embed(pixels)


class PixelSNAILIncrementalState(_Stream, MixtureLogits, ColourwiseIncrementalState, PixelOutputState):
    """The cached state of a pixel model: the stream's output at a pixel is its mixture's
    parameters, and ``level_log_probs(params, x, colour=None)`` is the model's likelihood."""

    def __init__(self, net: PixelSNAILNet, level_log_probs: Callable[..., torch.Tensor],
                 labels: torch.Tensor | None, count: int, height: int, width: int):
        super().__init__(net, labels, count, height, width)
        self.level_log_probs = level_log_probs


class PixelSNAILCodeState(_Stream, IncrementalState):
    """The cached state of a model over codes: ``embed`` reads the codes drawn (on the input scale)
    as the network's input, and a pixel's output is its ``K`` logits."""

    def __init__(self, net: PixelSNAILNet, embed: Callable[[torch.Tensor], torch.Tensor],
                 labels: torch.Tensor | None, count: int, height: int, width: int, condition: torch.Tensor | None = None):
        super().__init__(net, labels, count, height, width, embed, condition)

    @torch.no_grad()
    def pixel_logits(self, col: int, row: torch.Tensor) -> torch.Tensor:
        """``(B, K, 1)``: the logits of the code at ``(current row, col)``, given ``row``'s codes before it."""
        if self.row >= self.height:
            raise RuntimeError("pixel_logits called after the last row")
        if col != self._next_col - 1:  # a new pixel (asked again, the same one keeps its logits)
            if col < self._next_col:
                raise RuntimeError(f"pixel_logits: columns go in order; column {col} is already past")
            self.x[:, : self.channels, self.row + 1, 1 : col + 1] = self._as_input(row[:, :, :col])
            matrix, bias = self.out
            self._params = torch.addmm(bias, elu(self._advance(col)), matrix)
        return self._params[:, :, None]
