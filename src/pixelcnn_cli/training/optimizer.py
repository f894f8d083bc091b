"""Adam whose step is skipped on the device when the gradients are not finite.

A step with a NaN or infinite gradient would turn every weight (and the moving average) into
NaN. Checking for that on the host means waiting for the GPU at every step. PyTorch's fused
Adam takes a ``found_inf`` flag on the device instead (the one its gradient scaler uses): where
it is 1 the kernel leaves the weights, the moments and the step count as they were. The loop
reads the flag back only where it waits for the device anyway (progress, saves) and stops
there, so a bad step is never applied and never saved, and the GPU never stalls for it.

Where the fused kernel is not available the step is checked on the host instead (one wait).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from .. import distributed
from ..distributed import DistContext
from ..errors import TrainingError

# device types with a fused Adam kernel (torch.utils._foreach_utils lists them; that module is private)
FUSED_DEVICE_TYPES = ("cuda", "cpu", "xpu", "mps")


def make_adam(params: Iterable[nn.Parameter], lr: float, weight_decay: float, device: torch.device,
              betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    params = list(params)
    fused = device.type in FUSED_DEVICE_TYPES and all(p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused or None)


def is_guarded(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a bad step is skipped on the device (else :func:`guarded_step` waits for the flag)."""
    return all(group.get("fused") for group in optimizer.param_groups)


def guarded_step(optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """``optimizer.step()`` unless ``bad`` (a 0-d bool tensor on the parameters' device) is true."""
    if is_guarded(optimizer):
        optimizer.found_inf = bad.float()  # read by the fused kernel; no host sync
        optimizer.step()
    elif not bool(bad):
        optimizer.step()


class NonFiniteGuard:
    """The first step whose loss or gradient norm was not finite, recorded on the device.

    That step and every later bad one is skipped on the device (:func:`guarded_step`); the loop
    reads the record back only where it waits for the device anyway, and stops there.
    """

    def __init__(self, device: torch.device):
        self.first_step = torch.full((), -1, dtype=torch.long, device=device)
        self.first_loss = torch.zeros((), dtype=torch.float32, device=device)

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, norm: torch.Tensor, step: int) -> None:
        """The optimiser's step number ``step`` (from 1), unless ``loss`` or ``norm`` is not finite."""
        bad = ~(torch.isfinite(loss) & torch.isfinite(norm))
        first = bad & (self.first_step < 0)
        self.first_step = torch.where(first, step, self.first_step)
        self.first_loss = torch.where(first, loss, self.first_loss)
        guarded_step(optimizer, bad)

    def first_bad(self, ctx: DistContext, device: torch.device) -> tuple[int, float | None] | None:
        """The first bad step and its loss, ``(step, None)`` when it was another rank's, or ``None``
        when every step so far was finite on every rank."""
        bad_step = int(self.first_step)  # waits for the device
        if ctx.enabled:
            (worst,) = distributed.max_all(ctx, [bad_step], device)
            if bad_step < 0 and worst >= 0:
                return int(worst), None
        return (bad_step, float(self.first_loss)) if bad_step >= 0 else None

    def check(self, ctx: DistContext, device: torch.device, epoch: int, last_checkpoint: Path | None,
              run_dir: Path | None) -> None:
        """Stop with a clear error if some step so far had a non-finite loss or gradient on any rank.

        That step was skipped, so the weights are still the last good ones; the caller saves
        nothing, and the last checkpoint stays the last good one.
        """
        bad = self.first_bad(ctx, device)
        if bad is None:
            return
        step, loss = bad
        if loss is None:
            where = "loss or gradients became non-finite on another process"
        elif not math.isfinite(loss):
            where = f"loss became {loss}"
        else:
            where = f"gradients became non-finite (loss {loss:.4g})"
        kept = (f"the last good checkpoint is kept: {last_checkpoint} (resume from it with a lower rate: "
                f"--resume {run_dir} --lr ...)" if last_checkpoint else "no checkpoint had been saved yet")
        raise TrainingError(f"{where} at epoch {epoch}, step {step}; {kept}; try a lower --lr or a smaller --max-norm")


def load_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a saved optimiser state, keeping this optimiser's implementation (fused or not).

    ``load_state_dict`` takes every group setting from the file, ``fused`` included, and a
    checkpoint written by the unfused optimiser keeps its step counts on the CPU; both are put
    back to what this optimiser was made with.
    """
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, was_fused in zip(optimizer.param_groups, fused):
        group["fused"] = was_fused
        if was_fused:
            group["foreach"] = None
        for p in group["params"]:
            entry = optimizer.state.get(p)
            if entry and isinstance(entry.get("step"), torch.Tensor):
                entry["step"] = entry["step"].to(device=p.device if was_fused else "cpu", dtype=torch.float32)
