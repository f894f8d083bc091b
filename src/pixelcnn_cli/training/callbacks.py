"""What the training loop reports: the run's facts, each epoch's metrics, and the callback hooks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..contracts import ModelSpec


@dataclass
class RunInfo:
    run_dir: Path
    device: torch.device
    spec: ModelSpec
    parameters: int
    train_images: int
    test_images: int
    batches_per_epoch: int
    config: TrainConfig
    resumed_from: Path | None = None
    start_epoch: int = 1
    start_batch: int = 0
    start_step: int = 0
    total_steps: int = 0
    rank: int = 0
    world_size: int = 1


@dataclass
class EpochMetrics:
    epoch: int
    step: int
    train_bits_per_dim: float
    test_bits_per_dim: float
    test_nats_per_image: float
    learning_rate: float
    seconds: float
    images_per_second: float
    samples: str | None
    best: bool = False
    train_images: int = 0  # images trained in this epoch by this session (a resumed epoch counts only its own)
    train_seconds: float = 0.0  # seconds they took: images_per_second is their ratio

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EpochMetrics":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class TrainResult:
    run_dir: Path
    epochs: list[EpochMetrics] = field(default_factory=list)
    codes: bool = False  # a prior over codes: its bits/dim are bits per code

    @property
    def best(self) -> EpochMetrics | None:
        finite = [e for e in self.epochs if math.isfinite(e.test_bits_per_dim)]
        return min(finite, key=lambda e: e.test_bits_per_dim) if finite else None


class Callback:
    """Hooks the training loop calls; override what you need (the CLI draws progress with them).

    ``on_batch_end`` is called where the loop waits for the device: after every step on the
    CPU, every ``--log-every`` steps on a GPU, and at the end of each epoch; ``batch`` is the
    number of batches done in the epoch and ``loss_bits`` the mean loss since the last call.

    Under torchrun only rank 0 calls them, unless the callback sets ``all_ranks = True``.
    ``on_train_end`` is called however training ends (finished, failed or interrupted), with
    the epochs done so far.
    """

    all_ranks = False

    def on_train_start(self, info: RunInfo, model: nn.Module) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...
    def on_batch_end(self, epoch: int, batch: int, batches: int, loss_bits: float, images_per_second: float, lr: float) -> None: ...
    def on_eval(self, epoch: int, done: int, total: int) -> None: ...
    def on_sampling(self, epoch: int, done: int, total: int) -> None: ...
    def on_epoch_end(self, metrics: EpochMetrics) -> None: ...
    def on_train_end(self, result: TrainResult) -> None: ...



class CallbackGroup(Callback):
    """The callbacks of one process, called as one: rank 0 runs them all, other ranks only those
    with ``all_ranks``. :meth:`end_quietly` ends them after a failure."""

    def __init__(self, callbacks: list[Callback], is_main: bool):
        self.callbacks = [cb for cb in callbacks if is_main or getattr(cb, "all_ranks", False)]
        self.started = False

    def add(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def on_train_start(self, info: RunInfo, model: nn.Module) -> None:
        self.started = True
        for cb in self.callbacks:
            cb.on_train_start(info, model)

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(epoch, epochs, batches)

    def on_batch_end(self, epoch: int, batch: int, batches: int, loss_bits: float, images_per_second: float, lr: float) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(epoch, batch, batches, loss_bits, images_per_second, lr)

    def on_eval(self, epoch: int, done: int, total: int) -> None:
        for cb in self.callbacks:
            cb.on_eval(epoch, done, total)

    def on_sampling(self, epoch: int, done: int, total: int) -> None:
        for cb in self.callbacks:
            cb.on_sampling(epoch, done, total)

    def on_epoch_end(self, metrics: EpochMetrics) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(metrics)

    def on_train_end(self, result: TrainResult) -> None:
        for cb in self.callbacks:
            cb.on_train_end(result)

    def end_quietly(self, result: TrainResult) -> None:
        """``on_train_end`` for each started callback while already failing: the first error is
        the one to report, so theirs are dropped."""
        if not self.started:
            return
        for cb in self.callbacks:
            try:
                cb.on_train_end(result)
            except Exception:
                pass
