"""Check a model's autoregressive order by gradients, not by reading its masks.

For every output pixel and colour we ask autograd which inputs it depends on. In raster
order with colours R, G, B inside a pixel, output number ``p`` must depend on no input
``q >= p`` (that would be the future) and, where the network's reach covers them, on every
input ``q < p`` (a missing one is a blind spot).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .config import MIN_CHECK_SIZE
from .contracts import ModelSpec
from .likelihood import level_logits


@dataclass
class CausalityReport:
    """Dependencies of every output on every input, both indexed in generation order."""

    channels: int
    height: int
    width: int
    depends: torch.Tensor  # bool (N outputs, N inputs), N = height * width * channels

    @property
    def size(self) -> int:
        return self.depends.shape[0]

    def _earlier(self) -> torch.Tensor:
        n = self.size
        return torch.ones(n, n, dtype=torch.bool).tril(diagonal=-1)

    @property
    def future_violations(self) -> int:
        """(output, input) pairs where an output sees its own input or a later one."""
        return int((self.depends & ~self._earlier()).sum())

    @property
    def blind_spots(self) -> int:
        """(output, input) pairs where an earlier input is not seen."""
        return int((~self.depends & self._earlier()).sum())

    @property
    def ok(self) -> bool:
        return self.future_violations == 0 and self.blind_spots == 0

    def index(self, row: int, col: int, channel: int) -> int:
        return (row * self.width + col) * self.channels + channel

    def view_of(self, row: int, col: int, channel: int) -> torch.Tensor:
        """``(C, H, W)`` bool map of the inputs the output at ``(row, col, channel)`` sees."""
        flat = self.depends[self.index(row, col, channel)]
        return flat.view(self.height, self.width, self.channels).permute(2, 0, 1)

    def first_violation(self) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        bad = (self.depends & ~self._earlier()).nonzero()
        if len(bad) == 0:
            return None
        return self._position(int(bad[0, 0])), self._position(int(bad[0, 1]))

    def first_blind_spot(self) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        bad = (~self.depends & self._earlier()).nonzero()
        if len(bad) == 0:
            return None
        return self._position(int(bad[0, 0])), self._position(int(bad[0, 1]))

    def _position(self, index: int) -> tuple[int, int, int]:
        pixel, channel = divmod(index, self.channels)
        row, col = divmod(pixel, self.width)
        return row, col, channel




def full_view_size(model: nn.Module, spec: ModelSpec, cap: int = 8) -> int:
    """Largest square image on which the model can see every earlier pixel (``model.reach`` + 1),
    but never less than :data:`MIN_CHECK_SIZE`."""
    reach = getattr(model, "reach", None)
    limit = min(spec.height, spec.width)
    side = min(limit, reach + 1) if isinstance(reach, int) else min(limit, cap)
    return max(side, MIN_CHECK_SIZE)


def check_causality(
    model: nn.Module,
    spec: ModelSpec,
    height: int,
    width: int,
    max_trials: int = 8,
    chunk: int = 256,
    seed: int = 0,
) -> CausalityReport:
    """Build the dependency matrix of ``model`` on a ``height x width`` image.

    Each output's gradient with respect to the input is taken separately (one batch item
    per output, ``chunk`` at a time). Random inputs and random weightings of the levels are
    OR-ed together, trial after trial (at least two, at most ``max_trials``) until no
    earlier input is unseen; ReLUs are made leaky on a copy of the model (see
    :func:`_leaky_copy`), so a dependency cannot hide behind an inactive unit.
    """
    model = _leaky_copy(model)
    c = spec.channels
    n = c * height * width
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    depends = torch.zeros(n, n, dtype=torch.bool)
    model.eval()
    for trial in range(max_trials):
        if trial >= 2 and not (~depends & torch.ones(n, n, dtype=torch.bool).tril(-1)).any():
            break
        x = (torch.rand(1, c, height, width, generator=generator) * 2 - 1).to(device)
        level_weights = torch.randn(spec.color_levels, generator=generator).to(device)
        label = torch.randint(max(spec.num_classes, 1), (1,), generator=generator).to(device)
        for start in range(0, n, chunk):
            outputs = torch.arange(start, min(start + chunk, n))
            b = len(outputs)
            xb = x.expand(b, -1, -1, -1).clone().requires_grad_(True)
            labels = label.expand(b) if spec.num_classes else None
            logits = level_logits(model, model(xb, labels), xb)  # (b, L, C, H, W)
            pixel, channel = outputs // c, outputs % c
            row, col = pixel // width, pixel % width
            picked = logits[torch.arange(b), :, channel, row, col]  # (b, L)
            (grad,) = torch.autograd.grad((picked * level_weights).sum(), xb)
            # (b, C, H, W) -> generation order (H, W, C)
            flat = grad.detach().permute(0, 2, 3, 1).reshape(b, n).cpu() != 0
            depends[start : start + b] |= flat
    return CausalityReport(c, height, width, depends)


def _leaky_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.ReLU`` modules leak.

    A ReLU that is off for every probe input (common with small untrained or trained widths)
    would hide a path the network has; a leaky one keeps every path and creates none, so the
    dependencies measured are the architecture's.
    """
    clone = copy.deepcopy(model)
    for parent in clone.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.LeakyReLU(0.1))
    return clone
