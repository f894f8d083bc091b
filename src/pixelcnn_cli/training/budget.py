"""When a run ends early: ``--max-steps`` and ``--max-minutes``, and under torchrun the ranks' vote.

Only training steps count against ``--max-minutes`` (evaluation and sampling do not), over all
sessions of a resumed run. The share of it spent also paces the cosine and exponential
schedules, so a run that ends on time ends at the schedule's end.
"""

from __future__ import annotations

import torch

from .. import distributed
from ..config import TrainConfig
from ..distributed import DistContext


class Budget:
    def __init__(self, config: TrainConfig, ctx: DistContext, device: torch.device, vote_every: int):
        self.max_steps, self.max_minutes = config.max_steps, config.max_minutes
        self.ctx, self.device = ctx, device
        self.vote_every = vote_every  # under torchrun the ranks vote on the time at these steps only
        self.spent = 0.0  # the share of --max-minutes spent, as all ranks agree
        self.time_is_up = False

    def steps_done(self, step: int) -> bool:
        return self.max_steps is not None and step >= self.max_steps

    def over(self, step: int) -> bool:
        """No step is left: ``--max-steps`` reached, or the time voted up."""
        return self.steps_done(step) or self.time_is_up

    def share(self, trained_seconds: float) -> float:
        """The share of ``--max-minutes`` that ``trained_seconds`` of training steps spend."""
        return 0.0 if self.max_minutes is None else trained_seconds / (self.max_minutes * 60)

    def out_of_time(self, trained_seconds: float) -> bool:
        return self.max_minutes is not None and self.share(trained_seconds) >= 1.0

    def vote(self, step: int, trained_seconds: float) -> bool:
        """``--max-minutes`` reached, as all ranks see it: under torchrun they vote at every
        ``vote_every`` step only, so that every rank ends at the same step."""
        if self.max_minutes is None:
            return False
        if self.ctx.enabled:
            if step % self.vote_every:
                return False
            (share,) = distributed.max_all(self.ctx, [self.share(trained_seconds)], self.device)
        else:
            share = self.share(trained_seconds)
        self.spent, self.time_is_up = min(1.0, share), share >= 1.0
        return self.time_is_up
