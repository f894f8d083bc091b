"""The data order of a run: a pure function of the data seed, the epoch and the rank."""

from __future__ import annotations

import itertools
from typing import Any

from torch.utils.data import DataLoader, DistributedSampler

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

