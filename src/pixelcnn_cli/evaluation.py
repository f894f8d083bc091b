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
from .data.quantize import data_levels, levels_to_input
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
    unconditional 256-level one: ``-log p(x|y)`` or ``-log p(x)`` (``p(x|y,c)``, ``p(x|c)`` for a
    prior conditioned on maps), and the colour levels."""
    given = spec.condition_codes > 0  # a prior conditioned on maps: c, each map's condition
    what = "-log p(x|y" + (",c)" if given else ")") if conditional else "-log p(x|c)" if given else "-log p(x)"
    kinds = ["class-conditional" if conditional else "marginal over classes" if spec.num_classes else
             "" if given else "unconditional", "given its condition map" if given else ""]
    kind = ", ".join(k for k in kinds if k)
    of = f"{spec.color_levels} codes" if spec.codes else f"{spec.color_levels} colour levels"
    return {"likelihood": what, "conditional": conditional, "color_levels": spec.color_levels, "codes": spec.codes,
            "description": f"{what} ({kind}), {of}", **units(spec)}


def units(spec: ModelSpec) -> dict[str, str]:
    """How figures are named: per image and bits/dim, or for codes (one channel: a dim is a code)
    per map and bits/code, the unit of the VQ-VAE papers."""
    return {"item": "map", "unit": "bits/code"} if spec.codes else {"item": "image", "unit": "bits/dim"}


def nll_terms(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, spec: ModelSpec, tf32: bool = False
) -> torch.Tensor:
    """Per-dimension negative log-likelihoods (nats) of a batch of ``uint8`` images (or codes),
    ``B x C x H x W`` (on CUDA in full fp32 unless ``tf32``)."""
    levels = data_levels(images, spec.color_levels, spec.codes)
    x = levels_to_input(levels, spec.color_levels)
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
            labels = labels.to(device, non_blocking=True) if spec.takes_labels else None
            total_nats += nll_terms(model, images, labels, spec, tf32).sum(dtype=torch.float64)
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
