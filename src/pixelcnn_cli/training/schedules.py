"""Learning-rate schedules: a multiplier of the base rate for every optimiser step.

``constant``; ``cyclic``, the seed's triangle between lr and 10·lr (torch ``CyclicLR``'s
default half-cycle of 2000 steps); ``cosine``, from lr down to 0 at the run's end; ``exponential``,
from lr down to lr/100 at the run's end (the end of ``--epochs``, ``--max-steps`` or
``--max-minutes``, whichever comes first); and ``decay``, lr times ``decay`` at every step whatever
the run's length (PixelCNN++'s 0.999995). Any of them may start with a linear warm-up over
``warmup_steps``.
"""

from __future__ import annotations

import math

CYCLE_STEPS = 2000  # the seed's CyclicLR half-cycle (torch's default step_size_up)
EXPONENTIAL_END = 0.01  # the exponential schedule ends at lr / 100


def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int, decay: float = 1.0,
              time_spent: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total_steps``.

    ``time_spent`` is the share of a time budget (``--max-minutes``) already used: the run ends at
    whichever of its steps and its time runs out first, so cosine and exponential follow that one.
    """
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    t = max(min(1.0, step / max(1, total_steps)), min(1.0, time_spent))
    if schedule == "cyclic":  # the seed: triangle between lr and 10 * lr
        phase = (step % (2 * CYCLE_STEPS)) / CYCLE_STEPS
        factor = 1.0 + 9.0 * (phase if phase <= 1.0 else 2.0 - phase)
    elif schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * t))
    elif schedule == "exponential":
        factor = EXPONENTIAL_END**t
    elif schedule == "decay":
        factor = decay**step
    elif schedule == "constant":
        factor = 1.0
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    return warm * factor
