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
from .contracts import ModelSpec, pack_context
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


#: Bytes the check's backward passes may hold at once (on top of the model and one forward
#: pass): the outputs are checked in chunks sized to it, so memory stays flat for any model and image.
CHECK_MEMORY_BUDGET = 1 << 30

#: The CPU check's default work, in parameters x pixels x outputs (its time grows with all three):
#: about two to three minutes on two cores. A larger model is checked on a smaller square by default
#: (:func:`affordable_size`); ``--size`` checks a larger one, ``--cuda`` the whole view quickly.
CPU_CHECK_BUDGET = 8e12


#: Fewer copies of the input than this in a chunk: backwards batched through one forward instead.
MIN_COPIES = 16


def check_cost(model: nn.Module, channels: int, side: int) -> float:
    """The check's work on a ``side``-square image: parameters x pixels x outputs."""
    params = sum(p.numel() for p in model.parameters())
    return float(params) * side**2 * channels * side**2


def affordable_size(model: nn.Module, spec: ModelSpec, side: int, budget: float = CPU_CHECK_BUDGET) -> int:
    """The largest square, at most ``side`` and at least :data:`MIN_CHECK_SIZE` (or the model's own
    ``min_check_size``: PixelSNAIL's 16, where attention matters), whose check fits ``budget``."""
    floor = min(side, max(MIN_CHECK_SIZE, int(getattr(model, "min_check_size", MIN_CHECK_SIZE))))
    while side > floor and check_cost(model, spec.channels, side) > budget:
        side -= 1
    return side


def check_causality(
    model: nn.Module,
    spec: ModelSpec,
    height: int,
    width: int,
    max_trials: int = 8,
    chunk: int | None = None,
    seed: int = 0,
    memory_budget: int = CHECK_MEMORY_BUDGET,
    batched: bool | None = None,
) -> CausalityReport:
    """Build the dependency matrix of ``model`` on a ``height x width`` image.

    Each output's gradient with respect to the input is taken separately: one copy of the input
    per output, ``chunk`` copies per batch (default: as many as ``memory_budget`` holds, from the
    activations one forward pass saves), or with ``batched``, one forward pass per trial and a
    batch of backwards through it (``is_grads_batched``: less memory and no forward per output,
    but slower than copies on the CPU for small models; by default it is used when fewer than
    :data:`MIN_COPIES` copies fit the budget). The chunking changes how long the check takes and how much memory
    it holds, never what it finds. Random inputs and random weightings of the levels are OR-ed together, trial after
    trial (at least two, at most ``max_trials``) until no earlier input is unseen; ReLUs are made
    leaky on a copy of the model (see :func:`_leaky_copy`), so a dependency cannot hide behind an
    inactive unit.
    """
    model = _leaky_copy(model)
    c = spec.channels
    n = c * height * width
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    depends = torch.zeros(n, n, dtype=torch.bool)
    earlier = torch.ones(n, n, dtype=torch.bool).tril(-1)
    model.eval()
    for trial in range(max_trials):
        if trial >= 2 and not (~depends & earlier).any():
            break
        x = (torch.rand(1, c, height, width, generator=generator) * 2 - 1).to(device)
        level_weights = torch.randn(spec.color_levels, generator=generator).to(device)
        label = torch.randint(max(spec.num_classes, 1), (1,), generator=generator).to(device)
        condition = torch.randint(max(spec.condition_codes, 1), (1, spec.condition_height, spec.condition_width),
                                  generator=generator).to(device)
        # a random class and condition map per trial (the condition is not an input the check differentiates)
        context = pack_context(label if spec.num_classes else None, condition if spec.condition_codes else None)
        _trial(model, spec, x, context, level_weights, depends, chunk, memory_budget, batched)
    return CausalityReport(c, height, width, depends)


def _trial(model: nn.Module, spec: ModelSpec, x: torch.Tensor, label: torch.Tensor | None, weights: torch.Tensor,
           depends: torch.Tensor, chunk: int | None, budget: int, batched: bool) -> None:
    """OR into ``depends`` what every output's gradient sees on the probe input ``x``."""
    x = x.clone().requires_grad_(True)
    with _SavedBytes(model) as saved:
        logits = level_logits(model, model(x, label), x)  # (1, L, C, H, W)
    seed_bytes = logits.numel() * logits.element_size()
    # a batched backward holds, per output, at most a gradient for each activation, and its seed;
    # a copy of the input holds its own activations as well
    n = depends.shape[0]
    size = chunk or _chunk(budget, 2 * saved.bytes + seed_bytes)
    if batched or (batched is None and _chunk(budget, 2 * saved.bytes + seed_bytes) < MIN_COPIES):
        start = _batched_chunks(logits, x, weights, depends, chunk or _chunk(budget, saved.bytes + seed_bytes))
    else:
        start = 0
    del logits
    for first in range(start, n, size):  # a copy of the input per output
        outputs = torch.arange(first, min(first + size, n))
        depends[first : first + len(outputs)] |= _copies_view(model, x.detach(), label, outputs, weights)


def _chunk(budget: int, per_output: int) -> int:
    return max(1, budget // max(per_output, 1))


def _batched_chunks(logits: torch.Tensor, x: torch.Tensor, weights: torch.Tensor, depends: torch.Tensor,
                    size: int) -> int:
    """OR into ``depends`` the outputs' views, ``size`` outputs per batch of backwards; -> the first
    output not done (all of them unless an op of the model has no batching rule)."""
    n = depends.shape[0]
    if not logits.requires_grad:  # nothing depends on the input at all
        return n
    for start in range(0, n, size):
        outputs = torch.arange(start, min(start + size, n))
        try:
            depends[start : start + len(outputs)] |= _batched_view(logits, x, outputs, weights)
        except RuntimeError as error:
            if "atching rule" not in str(error) and "vmap" not in str(error):
                raise
            return start
    return n


def _picked(outputs: torch.Tensor, channels: int, width: int) -> tuple[torch.Tensor, ...]:
    """(channel, row, column) of each output number, in generation order."""
    pixel, channel = outputs // channels, outputs % channels
    return channel, pixel // width, pixel % width


def _batched_view(logits: torch.Tensor, x: torch.Tensor, outputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(b, N)`` bool: the inputs each of ``outputs`` depends on, by a batch of backwards through one graph."""
    b, (_, _, c, h, w) = len(outputs), logits.shape
    channel, row, col = _picked(outputs, c, w)
    seeds = logits.new_zeros(b, *logits.shape)
    seeds[torch.arange(b), 0, :, channel, row, col] = weights
    (grad,) = torch.autograd.grad(logits, x, seeds, retain_graph=True, is_grads_batched=True, allow_unused=True)
    if grad is None:
        return torch.zeros(b, c * h * w, dtype=torch.bool)
    return _flat(grad.detach()[:, 0])


def _copies_view(model: nn.Module, x: torch.Tensor, label: torch.Tensor | None, outputs: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
    """The same as :func:`_batched_view`, one copy of the input per output (for any model's ops)."""
    b, (_, c, h, w) = len(outputs), x.shape
    xb = x.expand(b, -1, -1, -1).clone().requires_grad_(True)
    logits = level_logits(model, model(xb, None if label is None else label.expand(b, *label.shape[1:])), xb)  # (b, L, C, H, W)
    if not logits.requires_grad:
        return torch.zeros(b, c * h * w, dtype=torch.bool)
    channel, row, col = _picked(outputs, c, w)
    picked = logits[torch.arange(b), :, channel, row, col]  # (b, L)
    (grad,) = torch.autograd.grad((picked * weights).sum(), xb, allow_unused=True)
    return torch.zeros(b, c * h * w, dtype=torch.bool) if grad is None else _flat(grad.detach())


def _flat(grad: torch.Tensor) -> torch.Tensor:
    """``(b, C, H, W)`` gradients -> ``(b, N)`` bool, inputs in generation order (H, W, C)."""
    b = grad.shape[0]
    return grad.permute(0, 2, 3, 1).reshape(b, -1).cpu() != 0


class _SavedBytes:
    """Counts the bytes of the activations a forward pass saves for its backward (parameters excluded)."""

    def __init__(self, model: nn.Module):
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._sizes: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._params:
            self._sizes[storage.data_ptr()] = storage.nbytes()
        return tensor

    def __enter__(self) -> _SavedBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def _leaky_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.ReLU`` modules leak, its parameters frozen.

    A ReLU that is off for every probe input (common with small untrained or trained widths)
    would hide a path the network has; a leaky one keeps every path and creates none, so the
    dependencies measured are the architecture's. Frozen parameters spare the backward passes
    their weight gradients (only the input's are asked for).
    """
    clone = copy.deepcopy(model)
    for parent in clone.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.LeakyReLU(0.1))
    clone.requires_grad_(False)
    return clone


def _opened(model: nn.Module, seed: int) -> nn.Module:
    """``model`` (a copy) with its all-zero parameters made random: the condition projections start
    at zero, which hides the paths the first training step opens (masks are buffers, not
    parameters, so no masked path opens)."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        if parameter.numel() > 1 and not parameter.any():
            parameter.copy_(torch.randn(parameter.shape, generator=generator).to(parameter) * 0.5)
    return model


@torch.no_grad()
def condition_reach(model: nn.Module, spec: ModelSpec, height: int, width: int, seed: int = 0,
                    batch: int = 16) -> torch.Tensor | None:
    """``(N outputs, h * w cells)`` bool, outputs in generation order: the cells of the condition map
    each output reads (``None`` for a model without one). The map is codes, not a differentiable
    input, so each cell is changed to another code in turn and the outputs whose level logits move
    are the ones that read it (on the copy of :func:`_leaky_copy`, zero projections made random by
    :func:`_opened`, each changed map in the same batch as the unchanged one, so nothing moves by
    rounding)."""
    if not spec.condition_codes:
        return None
    model = _opened(_leaky_copy(model), seed).eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    c, codes, cells = spec.channels, spec.condition_codes, spec.condition_height * spec.condition_width
    x = (torch.rand(1, c, height, width, generator=generator) * 2 - 1).to(device)
    label = torch.randint(max(spec.num_classes, 1), (1,), generator=generator)
    base = torch.randint(codes, (1, cells), generator=generator)
    changed = base.repeat(cells, 1)
    step = torch.randint(1, codes, (cells,), generator=generator)
    changed[torch.arange(cells), torch.arange(cells)] = (base[0] + step) % codes
    reads = []
    for first in range(0, cells, batch):
        maps = torch.cat([base, changed[first:first + batch]])
        b = maps.shape[0]
        context = pack_context(label.expand(b) if spec.num_classes else None,
                               maps.view(b, spec.condition_height, spec.condition_width)).to(device)
        xb = x.expand(b, -1, -1, -1)
        logits = level_logits(model, model(xb, context), xb).float()  # (b, L, C, H, W)
        moved = (logits[1:] - logits[:1]).abs().amax(dim=1) > 1e-6 * logits[:1].abs().amax()
        reads.append(_flat(moved).t())
    return torch.cat(reads, dim=1)
