"""What the cached samplers of both families share: weights as the matrices a per-pixel step
multiplies by, and row caches.

A cached sampler (Ramachandran et al. 2017, arXiv 1704.06001) computes each new cell of a
convolution from a few cached input rows instead of the whole image: a convolution over a window
of ``kh`` rows becomes one small convolution over a ``kh``-row cache (whole rows), or one matrix
product over the window's cells (one cell at a time).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .shifts import elu


def masked_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The weight a (possibly masked) convolution really uses, detached."""
    mask = getattr(conv, "mask", None)
    weight = conv.weight if mask is None else conv.weight * mask
    return weight.detach()


def conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    """A convolution's bias, detached; zeros where it has none."""
    if conv.bias is not None:
        return conv.bias.detach()
    return conv.weight.new_zeros(conv.out_channels).detach()


def window_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A convolution weight ``(out, in, kh, kw)`` as a ``(kh * kw * in, out)`` matrix, for windows of
    cells laid out ``(row, col, in)``: the convolution at one cell is one matrix product."""
    return weight.detach().permute(2, 3, 1, 0).reshape(-1, weight.shape[0]).contiguous()


def push_row(rows: torch.Tensor, row: torch.Tensor) -> None:
    """A cache of the last ``kh`` input rows ``(B, C, kh, pad + W + pad)``: every row moves up one
    (the oldest is dropped) and ``row`` (``B x C x W``) becomes the newest; the padding columns stay
    zero."""
    if rows.shape[2] == 2:
        rows[:, :, 0] = rows[:, :, 1]
    elif rows.shape[2] > 2:
        rows[:, :, :-1] = rows[:, :, 1:].clone()  # overlapping rows: copy through a clone
    pad = (rows.shape[-1] - row.shape[-1]) // 2
    rows[:, :, -1, pad : pad + row.shape[-1]] = row


class MixtureLogits:
    """The sampler protocol of a cached state whose network gives a pixel's mixture parameters
    once (one network step per pixel, kept for the pixel's colours) and whose likelihood is
    ``level_log_probs(params, x, colour=None)``: PixelCNN++'s and PixelSNAIL's. It gives the
    parameters themselves (``pixel_output``: the samplers draw from them through the model's
    ``draw_levels``) and the logits; the mixture runs on a 1 x 1 slice, so the colours of the pixel
    drawn so far set the later ones' means and weights.

    A state that uses it keeps ``x`` (its input buffer: image row ``r`` at ``r + input_row_offset``,
    column ``c`` at ``c + 1``), ``channels``, ``height``, ``row`` (the current one), ``_next_col``
    (the first column whose cells are not computed yet), ``_params`` and ``out`` (the output 1x1
    as a matrix and a bias), and computes its stream with ``_advance(col)``: the cells of the
    current row up to ``col``, returning the last one's output ``(B, F)``.
    """

    input_row_offset: int
    level_log_probs: Callable[..., torch.Tensor]
    _advance: Callable[[int], torch.Tensor | None]

    @torch.no_grad()
    def pixel_output(self, col: int, row: torch.Tensor) -> torch.Tensor:
        """The mixture parameters at ``(current row, col)``, ``B x P x 1 x 1``: the network runs once
        per pixel, and the pixel's later colours reuse them."""
        if self.row >= self.height:
            raise RuntimeError("pixel_output/pixel_logits called after the last row")
        if col != self._next_col - 1:  # a new pixel: one network step, its parameters kept for its colours
            if col < self._next_col:
                raise RuntimeError(f"pixel_output/pixel_logits: columns go in order; column {col} is already past")
            self.x[:, : self.channels, self.row + self.input_row_offset, 1 : col + 1] = row[:, :, :col]
            ul = self._advance(col)
            matrix, bias = self.out
            self._params = torch.addmm(bias, elu(ul), matrix)
        return self._params[:, :, None, None]

    @torch.no_grad()
    def pixel_logits(self, col: int, row: torch.Tensor) -> torch.Tensor:
        params = self.pixel_output(col, row)
        return self.level_log_probs(params, row[:, :, col, None, None])[:, :, :, 0, 0]

    @torch.no_grad()
    def colour_logits(self, col: int, row: torch.Tensor, colour: int) -> torch.Tensor:
        """``pixel_logits(col, row)[:, :, colour]``, computing the mixture for that colour alone."""
        params = self.pixel_output(col, row)
        return self.level_log_probs(params, row[:, :, col, None, None], colour)[:, :, 0, 0, 0]
