"""Cached, incremental evaluation of the gated PixelCNN for fast sampling.

Ramachandran et al. 2017 ("Fast Generation for Convolutional Autoregressive Models", arXiv
1704.06001): instead of running the whole network on the whole image for every new pixel,
each layer keeps what it has already computed and only the new outputs are worked out.

The gated model makes this simple because of how its two stacks see the image
(:mod:`.layers`):

* the **vertical stack** at row ``r`` reads input rows ``r - k//2 .. r`` (all columns within
  ``k//2``). Once row ``r`` is complete, every layer's vertical output for row ``r`` can be
  computed, one row per layer: :meth:`GatedIncrementalState.end_row`. Each layer keeps its
  vertical *input* rows (zero-padded on top, left and right like ``VerticalConv``), so a row
  costs one small convolution over ``k//2 + 1`` rows per layer;
* the **horizontal stack** at ``(r, c)`` reads the shifted vertical output of row ``r - 1``
  (through the 1x1 ``v_to_h``) and its own input at columns ``c - k//2 .. c`` of row ``r``.
  ``end_row`` turns row ``r``'s vertical pre-activations into the additive term each layer's
  horizontal stack needs for row ``r + 1`` (``v_to_h`` output + biases + label bias), and each
  layer keeps its horizontal *input* for the columns of the current row already done. A new
  pixel then costs, per layer, one ``(k//2 + 1) * fmaps -> 2 * fmaps`` matrix product on a
  window of the cached row, the gate, and one fused residual/skip product:
  :meth:`GatedIncrementalState.pixel_logits`.

All of it is batched over the images. Masked weights are multiplied and reshaped once, up
front, into the matrices the per-pixel products need. The results equal a full forward pass
of the model up to float rounding (``tests/test_sampling.py`` checks logits and samples).

With three colours the pixel's horizontal path is recomputed once per colour (R, then G given
R, then B given R and G). No feature at pixel ``c`` ever reads the last colour of pixel ``c``
(mask A hides it from the first layer and mask B keeps colour groups apart after that), so
the features computed for the last colour are already the final ones and are what the next
pixels read from the caches.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ...contracts import IncrementalState
from ..caches import conv_bias, masked_weight, push_row, window_matrix
from .layers import GatedBlock, OutputHead


class _Layer:
    """One gated block's precomputed weights and caches."""

    def __init__(self, block: GatedBlock, labels: torch.Tensor | None, count: int, width: int,
                 condition: torch.Tensor | None = None):
        v_conv, h_conv = block.v_conv, block.h_conv
        weight = v_conv.weight
        self.first = block.first
        self.fmaps = block.fmaps
        self.in_channels = v_conv.in_channels
        self.v_half = v_conv.half
        self.h_half = h_conv.half
        two_f = 2 * self.fmaps
        device, dtype = weight.device, weight.dtype

        self.v_weight = weight.detach()
        self.v_bias = conv_bias(v_conv)
        # horizontal conv (2F, Cin, 1, k) -> (k * Cin, 2F), matching windows laid out (B, k, Cin)
        self.h_matrix = window_matrix(masked_weight(h_conv))
        self.v_to_h = block.v_to_h.weight.detach()[:, :, 0, 0].t().contiguous()  # (2F, 2F)
        label_bias = None
        if block.label_bias is not None and labels is not None:
            label_bias = block.label_bias(labels).detach()  # (B, 2F)
        self.label_bias = label_bias[:, :, None] if label_bias is not None else None  # (B, 2F, 1)
        # everything the horizontal pre-activation adds besides its own convolution, per image
        constant = conv_bias(h_conv) + conv_bias(block.v_to_h)
        self.h_constant = constant.expand(count, two_f) if label_bias is None else constant + label_bias
        if not self.first:
            res, skip = block.h_residual, block.h_skip
            skip_weight = masked_weight(skip)[:, :, 0, 0]
            # the last block has no residual (its output is never read): zeros keep one layout
            res_weight = masked_weight(res)[:, :, 0, 0] if res is not None else torch.zeros_like(skip_weight)
            res_bias = conv_bias(res) if res is not None else torch.zeros_like(conv_bias(skip))
            self.rs_matrix = torch.cat([res_weight, skip_weight]).t().contiguous()  # (F, 2F): residual | skip
            self.rs_bias = torch.cat([res_bias, conv_bias(skip)])

        # a condition map's term per position, (B, H, W, 2F): both stacks add it where they add the label bias
        self.condition = None
        if block.condition_bias is not None and condition is not None:
            self.condition = block.condition_bias(condition).detach().permute(0, 2, 3, 1).contiguous()
        self.row = 0

        # caches
        self.v_rows = torch.zeros(count, self.in_channels, self.v_half + 1, width + 2 * self.v_half, device=device, dtype=dtype)
        self.h_row = torch.zeros(count, width + self.h_half, self.in_channels, device=device, dtype=dtype)
        # row 0: shift_down gives zeros above the image, so v_to_h adds only its bias
        self.row_add = self.h_constant[:, None, :].expand(count, width, two_f).contiguous()  # (B, W, 2F)
        if self.condition is not None:
            self.row_add += self.condition[:, 0]

    def end_row(self, v_in: torch.Tensor) -> torch.Tensor:
        """Feed this layer's vertical input for the finished row ``(B, Cin, W)``; returns its
        vertical output (the next layer's input) and prepares the next row's horizontal term."""
        push_row(self.v_rows, v_in)
        v_pre = F.conv2d(self.v_rows, self.v_weight, self.v_bias)[:, :, 0, :]  # (B, 2F, W)
        # next row's horizontal pre-activation term: v_to_h(v_pre) + biases (+ label bias)
        torch.baddbmm(self.h_constant[:, None, :], v_pre.transpose(1, 2), self.v_to_h.expand(v_pre.shape[0], -1, -1),
                      out=self.row_add)
        if self.label_bias is not None:
            v_pre = v_pre + self.label_bias
        if self.condition is not None:
            v_pre = v_pre + self.condition[:, self.row].transpose(1, 2)
            if self.row + 1 < self.condition.shape[1]:
                self.row_add += self.condition[:, self.row + 1]
        self.row += 1
        a, b = v_pre.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)


class GatedIncrementalState(IncrementalState):
    """The caches of every layer of a :class:`~.gated.GatedPixelCNN` for one sampling run."""

    def __init__(self, blocks: list[GatedBlock], head: OutputHead, labels: torch.Tensor | None,
                 count: int, height: int, width: int, embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 condition: torch.Tensor | None = None):
        self.count, self.height, self.width = count, height, width
        self.embed = embed  # codes: the rows given are codes on the input scale, read as vectors
        # condition: the condition map's features (B, dim, H, W), read at every position
        self.layers = [_Layer(block, labels, count, width, condition) for block in blocks]
        self.data_channels = head.data_channels
        self.color_levels = head.color_levels
        self.hidden_matrix = masked_weight(head.hidden)[:, :, 0, 0].t().contiguous()
        self.hidden_bias = conv_bias(head.hidden)
        self.logit_matrix = masked_weight(head.logits)[:, :, 0, 0].t().contiguous()
        self.logit_bias = conv_bias(head.logits)
        self.row = 0
        first = self.layers[0]
        like = first.h_row
        self.skip = like.new_zeros(count, first.fmaps)
        # Per layer and column, views of the caches the per-pixel step reads and writes, made
        # once so the step is nothing but arithmetic into preallocated buffers.
        self._steps = []
        for i, layer in enumerate(self.layers):
            f, k, half = layer.fmaps, layer.h_half + 1, layer.h_half
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            pre, rs = like.new_empty(count, 2 * f), like.new_empty(count, 2 * f)
            bufs = (pre, pre[:, :f], pre[:, f:], like.new_empty(count, f), like.new_empty(count, f),
                    like.new_empty(count, f), rs, rs[:, :f], rs[:, f:])
            columns = [
                (layer.h_row[:, c : c + k].reshape(count, -1),  # window (a view)
                 layer.row_add[:, c],  # vertical term + biases for this column
                 layer.h_row[:, c + half],  # this layer's input at the column (residual)
                 nxt.h_row[:, c + nxt.h_half] if nxt is not None else None)  # next layer's input
                for c in range(width)
            ]
            self._steps.append((layer, bufs, columns))

    def pixel_logits(self, col: int, row: torch.Tensor) -> torch.Tensor:
        first = self.layers[0]
        # the image is the first layer's horizontal input: pixel col - 1 is final now, pixel
        # col holds the colours drawn so far (earlier pixels were final at the previous call)
        lo = max(col - 1, 0)
        pixels = row[:, :, lo : col + 1] if self.embed is None else self.embed(row[:, :, lo : col + 1])
        first.h_row[:, lo + first.h_half : col + first.h_half + 1].copy_(pixels.transpose(1, 2))
        skip = self.skip
        started = False
        for layer, (pre, pre_a, pre_b, ta, sb, gated, rs, rs_res, rs_skip), columns in self._steps:
            window, add, h_in, out = columns[col]
            torch.addmm(add, window, layer.h_matrix, out=pre)
            torch.tanh(pre_a, out=ta)
            torch.sigmoid(pre_b, out=sb)
            if layer.first:
                torch.mul(ta, sb, out=out if out is not None else gated)
                continue
            torch.mul(ta, sb, out=gated)
            torch.addmm(layer.rs_bias, gated, layer.rs_matrix, out=rs)
            if out is not None:
                torch.add(h_in, rs_res, out=out)
            if started:
                skip.add_(rs_skip)
            else:
                skip.copy_(rs_skip)
                started = True
        hidden = torch.addmm(self.hidden_bias, torch.relu(skip), self.hidden_matrix)
        logits = torch.addmm(self.logit_bias, hidden.relu_(), self.logit_matrix)
        # channel index c * L + l -> (B, L, C), as OutputHead
        return logits.view(self.count, self.data_channels, self.color_levels).transpose(1, 2)

    def end_row(self, row: torch.Tensor) -> None:
        if self.row >= self.height:
            raise RuntimeError("end_row called after the last row")
        v = row if self.embed is None else self.embed(row)
        last = self.row == self.height - 1
        if not last:  # the last row's vertical outputs would never be read
            for layer in self.layers:
                v = layer.end_row(v)
        self.row += 1
