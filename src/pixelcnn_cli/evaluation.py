"""Test negative log-likelihood in nats per image and bits per dimension.

On CUDA it is computed in full fp32 (:func:`.precision.full_fp32`) unless ``tf32=True``: the
figure does not depend on whether the GPU has TF32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from .contracts import ModelSpec
from .data.quantize import levels_to_input, to_levels
from .likelihood import nll_per_dim
from .tf32 import full_fp32


@dataclass
class EvalResult:
    nats_per_image: float
    bits_per_dim: float
    images: int

    def as_dict(self) -> dict[str, float | int]:
        return {"nats_per_image": self.nats_per_image, "bits_per_dim": self.bits_per_dim, "images": self.images}


def figure_of(spec: ModelSpec, conditional: bool) -> dict[str, str | bool | int]:
    """What a likelihood figure is, so nobody compares a conditional 2-level figure with an
    unconditional 256-level one: ``-log p(x|y)`` or ``-log p(x)``, and the colour levels."""
    what = "-log p(x|y)" if conditional else "-log p(x)"
    kind = "class-conditional" if conditional else "unconditional" if not spec.num_classes else "marginal over classes"
    return {"likelihood": what, "conditional": conditional, "color_levels": spec.color_levels,
            "description": f"{what} ({kind}), {spec.color_levels} colour levels"}


def nll_terms(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, color_levels: int, tf32: bool = False
) -> torch.Tensor:
    """Per-dimension negative log-likelihoods (nats) of a batch of ``uint8`` images, ``B x C x H x W``
    (on CUDA in full fp32 unless ``tf32``)."""
    levels = to_levels(images, color_levels)
    x = levels_to_input(levels, color_levels)
    with full_fp32(not tf32):
        output = model(x, labels)
        return nll_per_dim(model, output, x, levels)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    spec: ModelSpec,
    device: torch.device,
    on_batch: Callable[[int, int], None] | None = None,
    tf32: bool = False,
) -> EvalResult:
    """Average NLL over every image of ``loader``; ``on_batch(done, total)`` reports progress.
    On CUDA in full fp32 unless ``tf32`` (faster on recent GPUs, with TF32's rounding)."""
    was_training = model.training
    model.eval()
    total_nats = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no wait per batch
    count = 0
    dims = 0
    try:
        for i, (images, labels) in enumerate(loader):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True) if spec.num_classes else None
            total_nats += nll_terms(model, images, labels, spec.color_levels, tf32).sum(dtype=torch.float64)
            count += images.shape[0]
            dims = images[0].numel()  # the data's own size, which may differ from training
            if on_batch:
                on_batch(i + 1, len(loader))
    finally:
        model.train(was_training)
    if count == 0:
        return EvalResult(float("nan"), float("nan"), 0)
    nats = float(total_nats) / count
    return EvalResult(nats, nats / dims / math.log(2), count)
