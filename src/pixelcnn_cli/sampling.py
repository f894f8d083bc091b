"""Drawing images from a trained model, pixel by pixel and colour by colour.

Every sampler takes its randomness from one tensor of uniforms drawn up front (one per
image, pixel and colour), so two samplers given the same seed draw the same images whenever
they compute the same probabilities: that is how the fast sampler is checked against this
reference.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .contracts import ModelSpec
from .data.quantize import levels_to_input
from .errors import PixelCNNError

Progress = Callable[[int, int], None]


def draw_uniforms(count: int, channels: int, height: int, width: int, seed: int | None) -> torch.Tensor:
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_().item()))
    return torch.rand(count, channels, height, width, generator=generator, dtype=torch.float64)


def pick(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF sampling: ``logits (B, L)``, ``uniforms (B,)`` -> levels ``(B,)``."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    cdf = probs.cumsum(dim=-1)
    below = (cdf < uniforms.to(cdf.device)[:, None]).sum(dim=-1)
    return below.clamp_(max=logits.shape[-1] - 1)


def resolve_labels(label: int, count: int, spec: ModelSpec, seed: int | None) -> torch.Tensor | None:
    """``label`` for every image, ``-1`` for random classes; ``None`` for an unconditional model."""
    if not spec.num_classes:
        if label != -1:
            raise PixelCNNError("--label: this model was trained without labels (unconditional); omit --label")
        return None
    if label >= spec.num_classes:
        names = f" ({', '.join(spec.class_names)})" if spec.class_names else ""
        raise PixelCNNError(f"--label: must be -1 or between 0 and {spec.num_classes - 1}{names}; got {label}")
    if label >= 0:
        return torch.full((count,), label, dtype=torch.long)
    generator = torch.Generator().manual_seed((seed if seed is not None else 0) + 1)
    return torch.randint(spec.num_classes, (count,), generator=generator)


@torch.no_grad()
def sample_naive(
    model: nn.Module,
    spec: ModelSpec,
    labels: torch.Tensor | None,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    on_step: Progress | None = None,
) -> torch.Tensor:
    """The reference sampler: one full forward pass per pixel and colour. Returns levels ``(N, C, H, W)``."""
    model.eval()
    device = next(model.parameters()).device
    count, channels, height, width = uniforms.shape
    levels = torch.zeros(count, channels, height, width, dtype=torch.long, device=device)
    labels = labels.to(device) if labels is not None else None
    total = channels * height * width
    step = 0
    for row in range(height):
        for col in range(width):
            for ch in range(channels):
                logits = model(levels_to_input(levels, spec.color_levels), labels)[:, :, ch, row, col]
                levels[:, ch, row, col] = pick(logits, uniforms[:, ch, row, col], temperature).to(device)
                step += 1
                if on_step:
                    on_step(step, total)
    return levels


SAMPLERS = ("naive",)


def sample(
    model: nn.Module,
    spec: ModelSpec,
    labels: torch.Tensor | None,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    sampler: str = "naive",
    on_step: Progress | None = None,
) -> torch.Tensor:
    """Draw ``len(uniforms)`` images of the uniforms' size with the chosen sampler."""
    if sampler not in SAMPLERS:
        raise PixelCNNError(f"--sampler: unknown sampler {sampler!r}; available: {', '.join(SAMPLERS)}")
    return sample_naive(model, spec, labels, uniforms, temperature, on_step)
