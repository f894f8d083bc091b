"""A run's state: where it is, what it has measured, and how that goes into a checkpoint and back.

Everything ``pixelcnn train --resume`` needs to carry on exactly, except the weights, the
optimiser and the moving average (the loop saves those beside it): the position (epoch, batch,
step), the training time spent (what ``--max-minutes`` counts), the best test bits/dim, the
metrics history, the data seed and the random states. The learning rate is a function of the
step (:func:`.schedules.lr_factor`), so no schedule state is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError


@dataclass
class RunState:
    epoch: int = 1  # the epoch in progress, from 1
    batch: int = 0  # its batches this process has trained
    step: int = 0  # optimiser steps over the whole run
    evaluated: bool = False  # the epoch was measured already (--max-steps or --max-minutes ended it early)
    trained_seconds: float = 0.0  # training steps' time over all sessions of the run
    best: float = math.inf  # the best test bits/dim so far
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per measured epoch
    data_seed: int = 0  # the data order of epoch e is a function of this seed and e (and the rank)
    # the shape of the run the state belongs to (a resume on another shape moves the batch, see refit)
    world_size: int = 1
    batches_per_epoch: int | None = None
    # as of the checkpoint: the epoch's summed loss and images over all ranks (the loop keeps the live
    # sums on the device), the random states of rank 0 and, under torchrun, of every rank
    epoch_loss_sum: float = 0.0
    epoch_seen: int = 0
    rng: dict[str, Any] = field(default_factory=dict)
    rng_by_rank: list[dict[str, Any]] | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> RunState:
        state = checkpoint["train_state"]
        position = state.get("position") or {}
        epoch = int(position.get("epoch", 1))
        best = checkpoint.get("best_bits_per_dim", math.inf)
        if "data_seed" not in state:
            raise CheckpointError("the checkpoint's training state has no data seed (was it changed by hand?)")
        by_rank = state.get("rng_by_rank")
        return cls(
            epoch=epoch, batch=int(position.get("batch", 0)), step=int(checkpoint.get("step", 0)),
            evaluated=bool(position.get("evaluated", False)), trained_seconds=float(state.get("trained_seconds", 0.0)),
            best=float(best) if best is not None else math.inf,
            # the epoch it carries on in is measured again at its end (after --max-steps, a partial record was kept)
            history=[h for h in state.get("history", []) if int(h.get("epoch", 0)) < epoch],
            data_seed=int(state["data_seed"]), world_size=int(state.get("world_size", 1)),
            batches_per_epoch=state.get("batches_per_epoch"), epoch_loss_sum=float(state.get("epoch_loss_sum", 0.0)),
            epoch_seen=int(state.get("epoch_seen", 0)), rng=state.get("rng") or {},
            rng_by_rank=by_rank if isinstance(by_rank, list) else None,
        )

    def checkpoint_entries(self) -> dict[str, Any]:
        """This state as a checkpoint's entries: ``epoch`` (the last measured), ``step``,
        ``best_bits_per_dim`` and ``train_state``."""
        train_state: dict[str, Any] = {
            "position": {"epoch": self.epoch, "batch": self.batch, "evaluated": self.evaluated},
            "history": list(self.history),
            "rng": self.rng,
            "data_seed": self.data_seed,
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_seen": self.epoch_seen,
            "world_size": self.world_size,
            "batches_per_epoch": self.batches_per_epoch,
            "trained_seconds": self.trained_seconds,
        }
        if self.rng_by_rank is not None:  # each rank's stream (dropout draws differ between ranks)
            train_state["rng_by_rank"] = self.rng_by_rank
        return {
            "epoch": self.history[-1]["epoch"] if self.history else 0,
            "step": self.step,
            "best_bits_per_dim": self.best,
            "train_state": train_state,
        }

    def refit(self, batches: int, world_size: int) -> None:
        """Carry the position over to a run of ``batches`` per epoch on ``world_size`` processes."""
        saved_batches = self.batches_per_epoch if self.batches_per_epoch is not None else batches
        if self.batch >= saved_batches:
            self.batch = batches
        elif self.world_size != world_size:  # same images onwards: all ranks together covered batch*world batches
            self.batch = min(batches, self.batch * self.world_size // world_size)
        self.world_size, self.batches_per_epoch = world_size, batches

    def rng_for(self, rank: int, world_size: int) -> tuple[dict[str, Any], bool]:
        """The random states for ``rank``, and whether they are rank 0's standing in for its own
        (saved by another number of processes: each rank then needs a new stream)."""
        if self.rng_by_rank is not None and len(self.rng_by_rank) == world_size:
            return self.rng_by_rank[rank] or {}, False
        return self.rng, True

    def record(self, metrics: dict[str, Any]) -> None:
        """Keep an epoch's metrics (replacing an earlier record of the same epoch)."""
        self.history = [h for h in self.history if h["epoch"] != metrics["epoch"]] + [metrics]
