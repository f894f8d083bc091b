"""Batches of ``uint8`` images and labels from any dataset plugin's split."""

from __future__ import annotations

import signal
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..contracts import BatchedItems
from ..errors import DataError


def collate(items: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch plugin items into ``(uint8 B x C x H x W, long B)`` (codes: any integer dtype); a
    pre-gathered batch passes through."""
    if isinstance(items, BatchedItems):
        return items.images, items.labels.long()
    images, labels = default_collate(list(items))
    if images.dtype.is_floating_point or images.dtype.is_complex or images.dtype == torch.bool:
        raise DataError(f"dataset items must be uint8 image tensors (or integer codes), got {images.dtype}")
    return images, torch.as_tensor(labels).long()


def worker_leaves_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGINT and SIGTERM: stopping is the main process's job.

    Ctrl-C and a cluster's SIGTERM reach the whole process group. A worker killed by either
    makes the main process raise ``DataLoader worker ... is killed by signal`` instead of
    saving a checkpoint; ignoring them, the workers live until the main process ends them.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    sampler: Any = None,
) -> DataLoader:
    generator = None
    if shuffle and sampler is None:
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_().item()))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        generator=generator,
        drop_last=False,
        persistent_workers=num_workers > 0,
        worker_init_fn=worker_leaves_signals if num_workers > 0 else None,
    )
