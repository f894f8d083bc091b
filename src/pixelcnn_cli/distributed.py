"""Many processes, one run: PyTorch's DistributedDataParallel as launched by ``torchrun``.

``torchrun --nproc-per-node N -m pixelcnn_cli train ...`` starts N processes and tells each its
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (and where to meet: ``MASTER_ADDR``/``MASTER_PORT``).
Each process trains on its own share of every batch (the batch size is per process), DDP
averages the gradients, and only rank 0 writes files, reports progress and logs. A caller that
has already made a process group (a notebook, a test) keeps it: training joins it.

The ranks must agree on when to stop: a stop signal or a bad loss seen by one rank is shared
through a tiny all-reduce at each step, so every rank stops at the same step and none is left
waiting in a collective.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .building import resolve_device
from .contracts import ModelSpec, pack_context
from .errors import ConfigError, PixelCNNError, TrainingError

T = TypeVar("T")
TIMEOUT = timedelta(minutes=30)  # rank 0 evaluates and samples alone while the others wait


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_rank() -> int:
    """This process's rank as torchrun set it (0 when not launched by torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be a number, got {os.environ.get('WORLD_SIZE')!r}") from None


class PeerLost(TrainingError):
    """Another process of the run is gone (killed, crashed, its machine lost): every rank says so."""


#: what Gloo says when a peer has gone: it raises plain RuntimeErrors (NCCL and the stores raise
#: torch.distributed.DistError and its subclasses)
_PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "connectFullMesh", "Broken pipe",
              "Connection refused")


def as_peer_lost(error: BaseException) -> PeerLost | None:
    """``error`` as one line, when it is a collective that failed because another process of a
    torchrun run is gone; None for anything else (and outside torchrun)."""
    if env_world_size() <= 1 or not isinstance(error, RuntimeError) or isinstance(error, PixelCNNError):
        return None
    text = str(error)
    if not (isinstance(error, dist.DistError) or any(marker in text for marker in _PEER_GONE)):
        return None
    cause = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    cause = cause.split("] ", 1)[-1].split(". ")[0][:160]  # after Gloo's source location, its first sentence
    return PeerLost(f"rank {env_rank()} of {env_world_size()}: another process of this run is gone ({cause}); "
                    "its own output says why. The last checkpoint is kept: the same command again with --resume auto "
                    "carries on from it")


@contextlib.contextmanager
def peer_loss_as_error() -> Iterator[None]:
    """Turn a collective that failed because a peer is gone into one :class:`PeerLost` line (a
    peer's death surfaces as whichever collective was waiting on it)."""
    try:
        yield
    except RuntimeError as error:
        lost = as_peer_lost(error)
        if lost is None:
            raise
        raise lost from None


def _device_for(requested: str | None, local_rank: int) -> torch.device:
    device = resolve_device(requested)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(f"device: process {local_rank} on this machine has no GPU of its own ({count} visible); "
                              "use --nproc-per-node at most the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def _attempt() -> str:
    """Which launch of the workers this is: torchrun counts its restarts (``--max-restarts``).

    The restarted workers meet in the same key-value store as the ones before them (the agent
    keeps it), and without a prefix of their own they would read the dead workers' addresses
    and try to connect to them ("Gloo connectFullMesh failed ... Connection refused")."""
    return os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")


def setup(requested_device: str | None) -> tuple[DistContext, torch.device]:
    """Join (or create, under torchrun) the process group; pick this process's device."""
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return DistContext(rank, world, local, owns_group=False), _device_for(requested_device, local)
    world = env_world_size()
    if world <= 1:
        return DistContext(), resolve_device(requested_device)
    if not dist.is_available():
        raise TrainingError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device_for(requested_device, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        store, rank, world = next(dist.rendezvous("env://", timeout=TIMEOUT))
        dist.init_process_group(backend, store=dist.PrefixStore(f"pixelcnn/attempt-{_attempt()}", store),
                                rank=rank, world_size=world, timeout=TIMEOUT)
    except ValueError as error:  # missing MASTER_ADDR / RANK ...: not launched by torchrun
        raise ConfigError(f"WORLD_SIZE={world} is set but the process group cannot start: {error}; launch with torchrun") from None
    return DistContext(dist.get_rank(), dist.get_world_size(), local, owns_group=True), device


def teardown(ctx: DistContext, together: bool = False) -> None:
    """Destroy the process group this run made. ``together``: every rank ended the same way (done,
    or stopped at the same step), so they first meet at a barrier: a rank that closes its
    connections while another still finishes sending its last message can make Gloo abort that
    process ("terminate called without an active exception", seen once under load)."""
    if ctx.owns_group and dist.is_initialized():
        # the DDP wrapper just released sits in reference cycles that hold the group: freed now, not
        # during interpreter exit, where Gloo's teardown can abort the process ("terminate called
        # without an active exception", seen at the end of a finished run)
        gc.collect()
        if together:
            dist.barrier()
        dist.destroy_process_group()


def _collective_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def max_all(ctx: DistContext, values: list[float], device: torch.device) -> list[float]:
    """Each value's maximum over the ranks (a no-op for one process)."""
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [float(v) for v in t.tolist()]


def sum_all(ctx: DistContext, values: list[float], device: torch.device) -> list[float]:
    """Sums over the ranks (a no-op for one process)."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def broadcast(ctx: DistContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (small picklable values only: names, messages)."""
    if not ctx.enabled:
        return value
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_weights(ctx: DistContext, model: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank, in place."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor, src=0)


def gather(ctx: DistContext, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (small picklable values: random states)."""
    if not ctx.enabled:
        return [value]
    values: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def _outcome(ctx: DistContext, fn: Callable[[], T]) -> tuple[T | None, BaseException | None, Any]:
    value, error, message = None, None, None
    try:
        value = fn()
    except Exception as caught:  # shared with the other ranks, then raised here as it was
        error = caught
        code = caught.exit_code if isinstance(caught, PixelCNNError) else 1
        message = [str(caught) or type(caught).__name__, code]
    return value, error, message


def _raise_shared(message: Any) -> None:
    text, code = message
    error = PixelCNNError(text)
    error.exit_code = code
    raise error


def on_main(ctx: DistContext, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give its result to every rank; its error is raised everywhere."""
    if not ctx.enabled:
        return fn()
    if ctx.is_main:
        value, error, message = _outcome(ctx, fn)
        broadcast(ctx, ["error", message] if error else ["ok", value])
        if error:
            raise error
        return value  # type: ignore[return-value]
    kind, payload = broadcast(ctx, None)
    if kind == "error":
        _raise_shared(payload)
    return payload


def main_first(ctx: DistContext, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0, then on the others (downloads happen once); rank 0's error stops all."""
    if not ctx.enabled:
        return fn()
    if ctx.is_main:
        value, error, message = _outcome(ctx, fn)
        broadcast(ctx, message)
        if error:
            raise error
        return value  # type: ignore[return-value]
    message = broadcast(ctx, None)
    if message:
        _raise_shared(message)
    return fn()


def ready_for_ddp(model: nn.Module, spec: ModelSpec, device: torch.device) -> bool:
    """Ready ``model`` for DDP; returns whether some parameters get no gradient (DDP must then
    look for them at every step).

    One forward and backward pass of a blank batch, laid out as training lays its batches out,
    tells; random states and ``.grad`` stay untouched. It also gives each weight the strides its
    gradient comes with: a weight with a size-1 dimension (a 1x1 kernel, one input channel) is the
    same bytes as channels_last or contiguous, but the two differ in strides, and its gradient's
    follow the convolution's input, not the weight. DDP builds its gradient buckets from the
    weights' strides, and a mismatch costs a copy per step ("Grad strides do not match bucket view
    strides"); aligned, there is none. The values do not change, only how they are described.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            x = torch.zeros(2, spec.channels, spec.height, spec.width, device=device)
            x = x.contiguous(memory_format=torch.channels_last)
            condition = torch.zeros(2, spec.condition_height, spec.condition_width, dtype=torch.long, device=device)
            labels = pack_context(torch.zeros(2, dtype=torch.long, device=device) if spec.num_classes else None,
                                  condition if spec.condition_codes else None)
            out = model(x, labels)
            grads = torch.autograd.grad(out.float().sum(), params, allow_unused=True)
    finally:
        model.train(was_training)
    with torch.no_grad():
        for param, grad in zip(params, grads):
            if grad is not None and grad.stride() != param.stride():
                param.data = torch.empty_strided(param.shape, grad.stride(), dtype=param.dtype,
                                                 device=param.device).copy_(param.data)
    return any(g is None for g in grads)


def keeps_running_statistics(model: nn.Module) -> bool:
    """Whether the model has buffers that training changes (batch norm's running statistics).

    Only those need DDP to send rank 0's buffers at every forward; the masks of a PixelCNN are
    constant buffers, and re-sending them would cost a broadcast per step for nothing.
    """
    return any(isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats for m in model.modules())


def _buffer_sync(sync: bool) -> dict[str, bool]:
    """DDP's keyword for re-sending buffers at every forward: ``forward_sync_buffers`` in newer
    torch (2.14 deprecates ``broadcast_buffers``), ``broadcast_buffers`` in older ones."""
    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": sync}
    return {"broadcast_buffers": sync}


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device, spec: ModelSpec) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several processes, else itself."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=ready_for_ddp(model, spec, device),
        **_buffer_sync(keeps_running_statistics(model)),
    )
