"""Setting a run up: from its config (and the checkpoint it resumes) to what the loop trains with.

The data, the model (with the resumed weights), the run folder with its ``config.json``, the
batches of every epoch, Adam (with its resumed state), the moving average and the network as
the processes run it (DDP under torchrun, compiled with ``--compile``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import __version__, distributed, registry
from ..building import (build_data, build_model, data_color_levels, given_architecture, place_model, refuse_undeclared_flags, spec_for,
                        spec_to_dict)
from ..checkpoint import state_bytes
from ..config import TrainConfig
from ..contracts import ModelSpec, SupportsDataInit
from ..data.batches import collate
from ..data.quantize import data_levels, levels_to_input
from ..distributed import DistContext
from ..errors import CheckpointError
from ..runs import open_run_dir
from .ema import WeightAverage
from .loaders import RunLoaders, run_loaders
from .optimizer import load_state, make_adam
from .resume import ResumePoint, check_resume_spec
from .state import RunState


@dataclass
class RunParts:
    config: TrainConfig
    spec: ModelSpec
    model: nn.Module  # the model itself: its weights are what is saved
    net: nn.Module  # what the processes run: the model, wrapped by DDP and compiled when asked
    model_options: dict[str, Any]
    plugins: dict[str, Any]  # where the dataset and the model came from
    run_dir: Path
    data: RunLoaders
    optimizer: torch.optim.Optimizer
    ema: WeightAverage | None
    train_images: int
    test_images: int

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated, sampled and saved as ``model_state``: the moving average, if kept."""
        return self.ema.model if self.ema is not None else self.model

    def checkpoint(self, state: RunState, metrics: dict[str, Any] | None, interrupted: bool) -> dict[str, Any]:
        """A checkpoint of the run at ``state`` (see :mod:`..checkpoint` for what each entry is)."""
        payload = {
            "config": self.config.model_dump(mode="json"), "spec": spec_to_dict(self.spec),
            "model_options": self.model_options, "plugins": self.plugins, "model_state": self.eval_model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(), "metrics": metrics, "interrupted": interrupted,
            "ema_decay": self.config.ema, **state.checkpoint_entries(),
        }
        if self.ema is not None:
            payload["train_state"]["raw_model_state"] = self.model.state_dict()
            payload["train_state"]["ema_updates"] = self.ema.updates
        return payload


def build_run(config: TrainConfig, ctx: DistContext, device: torch.device, state: RunState,
              point: ResumePoint | None) -> RunParts:
    """Everything the loop trains with; fills in ``state``'s data seed (a new run) and fits its
    position to this run's batches and processes (a resumed one)."""
    if point is None:  # before the data loads; a resumed run's config records every field, used or not
        refuse_undeclared_flags(config.model, given_architecture(config))
    data = distributed.main_first(ctx, lambda: build_data(config.dataset, config.data_dir, config.download,
                                                           config.dataset_options))
    # codes: their number is the levels (config.json and the checkpoints record it)
    config = config.model_copy(update={"color_levels": data_color_levels(config, data)})
    spec = spec_for(config, data)
    if point is not None:
        check_resume_spec(point, spec)
    model, model_options = build_model(config, spec)
    model = place_model(model, device)
    if point is None:  # a resumed run loads these weights from its checkpoint instead
        init_from_data(model, data.train, spec, device, ctx)
    plugins = {"dataset": registry.provenance(registry.datasets, config.dataset),
               "model": registry.provenance(registry.models, config.model)}
    record = {"config": config.model_dump(mode="json"), "spec": spec_to_dict(spec), "model_options": model_options,
              "plugins": plugins, "package_version": __version__}
    checkpoint_bytes = state_bytes(model) * (3 + (1 if config.ema else 0)) + 2**20
    run_dir = distributed.on_main(ctx, lambda: open_run_dir(
        config, None if point is None else point.run_dir, record, checkpoint_bytes))

    # the data order: a pure function of the data seed and the epoch (and the rank)
    if point is None:
        state.data_seed = config.seed if config.seed is not None else distributed.broadcast(
            ctx, int(torch.randint(0, 2**62, ()).item()))
    if ctx.enabled:
        # every rank drew the same random numbers so far (the same seed, or torch's fixed default),
        # which built the same initial weights; from here on each needs its own stream, or dropout
        # would drop the same units on every rank
        torch.manual_seed((state.data_seed * 1_000_003 + ctx.rank) % 2**63)
    loaders = run_loaders(data.train, data.test, config, ctx, state.data_seed, device.type == "cuda")
    state.refit(loaders.batches, ctx.world_size)

    optimizer, ema = _optimiser(config, model, device, point)
    net: nn.Module = distributed.wrap_model(model, ctx, device, spec)
    if config.compile:  # opt-in: compilation costs a slow first step, pays off on long GPU runs
        net = torch.compile(net)
    return RunParts(config, spec, model, net, model_options, plugins, run_dir, loaders, optimizer, ema,
                    len(data.train), len(data.test))


#: openai/pixel-cnn's ``init_batch_size``: the images weight norm's data-dependent init sees.
INIT_IMAGES = 16


def init_from_data(model: nn.Module, train_set: Any, spec: ModelSpec, device: torch.device, ctx: DistContext) -> None:
    """A model with ``data_init`` (:class:`~..contracts.SupportsDataInit`) is initialised from the first
    :data:`INIT_IMAGES` training images by index, in fp32 on the training device: before the moving
    average copies the model and before DDP wraps it, so both start from the initialised weights.

    Every torchrun rank computes it from the same images and weights; rank 0's result is then
    broadcast, so the ranks (and their moving averages) agree bit for bit even where GPU kernels
    round differently (DDP's own broadcast at wrap time comes after the average's copy)."""
    if not isinstance(model, SupportsDataInit) or len(train_set) == 0:
        return
    images, labels = collate([train_set[i] for i in range(min(INIT_IMAGES, len(train_set)))])
    x = levels_to_input(data_levels(images, spec.color_levels, spec.codes), spec.color_levels).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    model.data_init(x, labels.to(device) if spec.takes_labels else None)
    distributed.broadcast_weights(ctx, model)


def _optimiser(config: TrainConfig, model: nn.Module, device: torch.device,
               point: ResumePoint | None) -> tuple[torch.optim.Optimizer, WeightAverage | None]:
    """Adam and the moving average; on resume, the weights and both their saved states."""
    optimizer = make_adam(model.parameters(), config.learning_rate, config.weight_decay, device,
                          betas=config.adam_betas)
    if point is None:
        return optimizer, WeightAverage(model, config.ema) if config.ema else None
    ckpt, train_state = point.checkpoint, point.checkpoint["train_state"]
    raw = train_state.get("raw_model_state") or ckpt["model_state"]
    _load(lambda: model.load_state_dict(raw), "model weights")
    ema = WeightAverage(model, config.ema) if config.ema else None
    _load(lambda: load_state(optimizer, ckpt["optimizer_state"]), "optimiser state")
    if ema is not None:
        updates = int(train_state.get("ema_updates", 0))
        _load(lambda: ema.load_state_dict(ckpt["model_state"], updates), "averaged weights")
    return optimizer, ema


def _load(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except (RuntimeError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"the checkpoint's {what} do not fit this run (was it changed by hand?)") from None
