"""Codes as a model's input: the integers back from the input scale, and their learnt embedding.

The host hands every model its data on one scale, level ``k`` of ``L`` as ``2k / (L - 1) - 1``
(:func:`~pixelcnn_cli.data.quantize.levels_to_input`), codes included, so training, eval and
both samplers treat codes as they treat pixels. A code's value means nothing (code 7 is no
closer to 8 than to 300), so a model of codes reads them through an embedding, not as a number.
"""

from __future__ import annotations

import torch
from torch import nn


def input_codes(x: torch.Tensor, codes: int) -> torch.Tensor:
    """Codes ``(B, *)`` long from their input scale ``(B, 1, *)``; exact for any ``codes`` that
    fp32 resolves (the step between codes is ``2 / (K - 1)``, far above its rounding at K = 65,536)."""
    return torch.round((x[:, 0].float() + 1.0) * ((codes - 1) / 2.0)).long().clamp_(0, codes - 1)


class CodeEmbedding(nn.Module):
    """``(B, 1, *)`` codes on the input scale -> ``(B, dim, *)`` learnt vectors, one per code."""

    def __init__(self, codes: int, dim: int):
        super().__init__()
        self.codes = codes
        self.table = nn.Embedding(codes, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vectors = self.table(input_codes(x, self.codes)).movedim(-1, 1)  # channels last in memory
        if x.requires_grad:
            # A lookup has no gradient with respect to its index, and the causality check reads a
            # model's dependencies off its input's gradient: adding x - x (exactly zero) gives each
            # position's vector the gradient of that position's code, and nothing else.
            vectors = vectors + (x - x.detach())
        return vectors
