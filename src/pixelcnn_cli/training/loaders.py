"""The data order of a run: a pure function of the data seed, the epoch and the rank."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..data.batches import collate, worker_leaves_signals
from ..distributed import DistContext


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
