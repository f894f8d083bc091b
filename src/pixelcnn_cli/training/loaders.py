"""The data order of a run: a pure function of the data seed, the epoch and the rank."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..config import TrainConfig
from ..data.batches import collate, make_loader, worker_leaves_signals
from ..distributed import DistContext
from ..errors import TrainingError


class EpochSampler(DistributedSampler):
    """Shuffles every epoch from ``(seed, epoch)`` alone, gives each rank its share, and can skip
    the batches of the epoch already trained (resuming mid-epoch)."""

    def __init__(self, dataset: Any, ctx: DistContext, seed: int, batch_size: int):
        super().__init__(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.skip_batches = 0

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.skip_batches * self.batch_size:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip_batches * self.batch_size)



class LimitedLoader:
    """The first ``limit`` batches of a loader (``--limit-test-batches``)."""

    def __init__(self, loader: DataLoader, limit: int | None):
        self.loader, self.limit = loader, limit

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.limit) if self.limit else iter(self.loader)

    def __len__(self) -> int:
        return min(len(self.loader), self.limit) if self.limit else len(self.loader)


def train_loader(dataset: Any, ctx: DistContext, data_seed: int, batch_size: int, num_workers: int,
                 pin: bool) -> tuple[EpochSampler, DataLoader, torch.Generator]:
    """The training batches of this rank: its sampler (set the epoch and the batches to skip on
    it), the loader, and the generator that seeds the workers (reseed it every epoch)."""
    sampler = EpochSampler(dataset, ctx, data_seed, batch_size)
    generator = torch.Generator()
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate,
        pin_memory=pin, generator=generator, drop_last=False, persistent_workers=num_workers > 0,
        worker_init_fn=worker_leaves_signals if num_workers else None,
    )
    return sampler, loader, generator


@dataclass
class RunLoaders:
    sampler: EpochSampler  # set the epoch and the batches to skip on it before each epoch
    train: DataLoader
    generator: torch.Generator  # seeds the workers: reseed it every epoch
    test: LimitedLoader
    batches: int  # per epoch, on this rank
    total_steps: int  # of the whole run, unless --max-minutes ends it first


def run_loaders(train_set: Any, test_set: Any, config: TrainConfig, ctx: DistContext, data_seed: int,
                pin: bool) -> RunLoaders:
    """A run's training and test batches, and how many steps the run has."""
    sampler, loader, generator = train_loader(train_set, ctx, data_seed, config.batch_size, config.num_workers, pin)
    test = make_loader(test_set, max(config.batch_size, 128), False, None, config.num_workers, pin)
    batches = math.ceil(sampler.num_samples / config.batch_size)
    if config.limit_train_batches:
        batches = min(batches, config.limit_train_batches)
    if batches == 0:
        raise TrainingError(f"dataset {config.dataset!r} has no training images")
    steps = batches * config.epochs if config.max_steps is None else min(batches * config.epochs, config.max_steps)
    return RunLoaders(sampler, loader, generator, LimitedLoader(test, config.limit_test_batches), batches, steps)
