"""Polyak averaging: an exponential moving average of the weights (``--ema DECAY``).

PixelCNN++ evaluated and sampled with such an average (decay 0.9995). After each optimiser
step every parameter moves towards the trained one: ``avg <- d·avg + (1 - d)·w``. Early on the
decay is held at ``(1 + n) / (10 + n)`` (n: updates so far) when that is smaller, so the
average is not dominated by the random initial weights. Buffers are copied as they are.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError("decay must be between 0 and 1")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - self.current_decay()
        # one fused kernel per group of tensors instead of one per parameter (it matters on a GPU)
        averages, params = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        if averages:
            torch._foreach_lerp_(averages, params, weight)
        for avg, buf in zip(self.model.buffers(), model.buffers()):
            avg.copy_(buf)

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any], updates: int) -> None:
        self.model.load_state_dict(state)
        self.updates = updates
