"""What happens after each epoch's training on rank 0: the test NLL and the epoch's sample grid.

Both give way to a stop request: a signal during them abandons them (the trained epoch is saved
and evaluated again on resume) instead of making the user wait for a long evaluation.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig
from ..contracts import ModelSpec, with_classes
from ..evaluation import evaluate
from ..images import save_levels_grid
from ..sampling import draw_uniforms, sample
from .callbacks import Callback
from ..runs import writing
from .stopping import StopRequest


class _Abandon(Exception):
    """Evaluation or sampling is left because a stop was requested."""


def epoch_labels(count: int, spec: ModelSpec, test_loader=None) -> torch.Tensor | None:
    """Labels for the per-epoch grid: classes in turn, so every class shows; a conditioned model's
    are the contexts (class and condition map) of the first test maps, repeated to ``count``."""
    classes = torch.arange(count) % spec.num_classes if spec.num_classes else None
    if not spec.condition_codes or test_loader is None:
        return classes
    gathered, contexts = 0, []
    for _, labels in test_loader:  # the first test maps' contexts, enough for the grid
        contexts.append(labels)
        gathered += len(labels)
        if gathered >= count:
            break
    contexts = torch.cat(contexts)[torch.arange(count) % gathered]
    return contexts if classes is None else with_classes(contexts, classes)


def evaluate_and_sample(model: nn.Module, test_loader, spec: ModelSpec, device: torch.device, config: TrainConfig,
                        epoch: int, run_dir: Path, callback: Callback,
                        stop: StopRequest) -> tuple[float, float, str | None, bool]:
    """Test bits/dim and nats/image, the path of ``samples/epoch_NNN.png`` (``None`` without
    ``epoch_samples``), and whether a stop abandoned them (then the figures are NaN)."""

    def on_eval(done: int, total: int) -> None:
        callback.on_eval(epoch, done, total)
        if stop.requested:
            raise _Abandon

    def on_sampling(done: int, total: int) -> None:
        callback.on_sampling(epoch, done, total)
        if stop.requested:
            raise _Abandon

    try:
        test = evaluate(model, test_loader, spec, device, on_eval)
        samples_path = None
        if config.epoch_samples:
            uniforms = draw_uniforms(config.epoch_samples, spec.channels, spec.height, spec.width,
                                     None if config.seed is None else config.seed + epoch)
            levels = sample(model, spec, epoch_labels(config.epoch_samples, spec, test_loader), uniforms, on_step=on_sampling)
            target = run_dir / "samples" / f"epoch_{epoch:03d}.png"
            with writing(target):
                samples_path = str(save_levels_grid(levels, spec.color_levels, target, codes=spec.codes))
    except _Abandon:
        return math.nan, math.nan, None, True
    return test.bits_per_dim, test.nats_per_image, samples_path, False
