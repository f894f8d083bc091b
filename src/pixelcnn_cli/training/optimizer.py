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

from typing import Any, Iterable

import torch
from torch import nn

# device types with a fused Adam kernel (torch.utils._foreach_utils lists them; that module is private)
FUSED_DEVICE_TYPES = ("cuda", "cpu", "xpu", "mps")


def make_adam(params: Iterable[nn.Parameter], lr: float, weight_decay: float, device: torch.device) -> torch.optim.Adam:
    params = list(params)
    fused = device.type in FUSED_DEVICE_TYPES and all(p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


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
