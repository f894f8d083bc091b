"""The training loop. It reports through callbacks and never prints.

Each epoch: train (with gradient clipping and a per-step learning-rate schedule), measure test
bits/dim, sample ``epoch_samples`` images into a PNG grid, append the epoch's metrics to
``metrics.jsonl`` and save ``checkpoints/last.pt`` and, when test bits/dim improved,
``checkpoints/best.pt``. Only the current weights are kept in memory.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, registry
from .building import build_model, load_data, resolve_device, spec_for, spec_to_dict
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .contracts import ModelSpec
from .data.loading import make_loader
from .data.quantize import levels_to_input, to_levels
from .errors import TrainingError
from .evaluation import evaluate
from .images import save_levels_grid
from .sampling import draw_uniforms, sample

CYCLE_STEPS = 2000  # the seed's CyclicLR half-cycle (torch's default step_size_up)


@dataclass
class RunInfo:
    run_dir: Path
    device: torch.device
    spec: ModelSpec
    parameters: int
    train_images: int
    test_images: int
    batches_per_epoch: int
    config: TrainConfig


@dataclass
class EpochMetrics:
    epoch: int
    step: int
    train_bits_per_dim: float
    test_bits_per_dim: float
    test_nats_per_image: float
    learning_rate: float
    seconds: float
    images_per_second: float
    samples: str | None
    best: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainResult:
    run_dir: Path
    epochs: list[EpochMetrics] = field(default_factory=list)

    @property
    def best(self) -> EpochMetrics | None:
        finite = [e for e in self.epochs if math.isfinite(e.test_bits_per_dim)]
        return min(finite, key=lambda e: e.test_bits_per_dim) if finite else None


class Callback:
    """Hooks the training loop calls; override what you need (the CLI draws progress with them)."""

    def on_train_start(self, info: RunInfo, model: nn.Module) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...
    def on_batch_end(self, epoch: int, batch: int, batches: int, loss_bits: float, images_per_second: float, lr: float) -> None: ...
    def on_eval(self, epoch: int, done: int, total: int) -> None: ...
    def on_sampling(self, epoch: int, done: int, total: int) -> None: ...
    def on_epoch_end(self, metrics: EpochMetrics) -> None: ...
    def on_train_end(self, result: TrainResult) -> None: ...


def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    t = min(1.0, step / max(1, total_steps))
    if schedule == "cyclic":  # the seed: triangle between lr and 10 * lr
        phase = (step % (2 * CYCLE_STEPS)) / CYCLE_STEPS
        factor = 1.0 + 9.0 * (phase if phase <= 1.0 else 2.0 - phase)
    elif schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * t))
    elif schedule == "exponential":
        factor = 0.01**t
    else:
        factor = 1.0
    return warm * factor


def prepare_run_dir(config: TrainConfig) -> Path:
    """Create the run folder up front; never replace an existing one unless ``overwrite``."""
    root = Path(config.output_dir)
    if config.run_name:
        run_dir = root / config.run_name
        if run_dir.exists():
            if not config.overwrite:
                raise TrainingError(f"run folder {run_dir} already exists; pass --overwrite to replace it or choose another --run-name")
            shutil.rmtree(run_dir)
    else:
        base = f"{config.dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        run_dir, n = root / base, 1
        while run_dir.exists():
            n += 1
            run_dir = root / f"{base}-{n}"
    try:
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "samples").mkdir()
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise TrainingError(f"cannot write the run folder {run_dir}: {error.strerror or error}") from None
    return run_dir


def seed_everything(seed: int | None) -> None:
    if seed is not None:
        torch.manual_seed(seed)


def epoch_labels(count: int, spec: ModelSpec) -> torch.Tensor | None:
    """Labels for the per-epoch grid: classes in turn, so every class shows."""
    return torch.arange(count) % spec.num_classes if spec.num_classes else None


def train(config: TrainConfig, callbacks: list[Callback] | None = None) -> TrainResult:
    callbacks = list(callbacks or [])
    device = resolve_device(config.device)
    seed_everything(config.seed)
    data = load_data(config.dataset, config.data_dir, config.download, config.dataset_options)
    spec = spec_for(config, data)
    model, model_options = build_model(config, spec)
    model.to(device)
    run_dir = prepare_run_dir(config)
    plugins = {
        "dataset": registry.provenance(registry.datasets, config.dataset),
        "model": registry.provenance(registry.models, config.model),
    }
    (run_dir / "config.json").write_text(
        json.dumps(
            {"config": config.model_dump(mode="json"), "spec": spec_to_dict(spec), "model_options": model_options,
             "plugins": plugins, "package_version": __version__},
            indent=2,
        )
    )
    if config.wandb:
        from .wandb_logging import WandbCallback

        callbacks.append(WandbCallback(config, run_dir))

    pin = device.type == "cuda"
    train_loader = make_loader(data.train, config.batch_size, True, config.seed, config.num_workers, pin)
    test_loader = make_loader(data.test, max(config.batch_size, 128), False, None, config.num_workers, pin)
    batches = len(train_loader)
    if config.limit_train_batches:
        batches = min(batches, config.limit_train_batches)
    if batches == 0:
        raise TrainingError(f"dataset {config.dataset!r} has no training images")
    total_steps = batches * config.epochs

    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.lr_schedule, step, total_steps, config.warmup_steps)
    )
    info = RunInfo(run_dir, device, spec, sum(p.numel() for p in model.parameters()), len(data.train), len(data.test), batches, config)
    for cb in callbacks:
        cb.on_train_start(info, model)

    result = TrainResult(run_dir)
    best = math.inf
    step = 0
    ln2 = math.log(2)
    for epoch in range(1, config.epochs + 1):
        for cb in callbacks:
            cb.on_epoch_start(epoch, config.epochs, batches)
        model.train()
        started = time.perf_counter()
        seen, loss_sum = 0, 0.0
        for batch, (images, labels) in enumerate(train_loader, start=1):
            if batch > batches:
                break
            images = images.to(device, non_blocking=pin)
            labels = labels.to(device, non_blocking=pin) if spec.num_classes else None
            levels = to_levels(images, spec.color_levels)
            logits = model(levels_to_input(levels, spec.color_levels), labels)
            loss = nn.functional.cross_entropy(logits, levels)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"loss became {loss_value} at epoch {epoch}, step {step + 1}; the last good checkpoint is kept in "
                    f"{run_dir / 'checkpoints'}; try a lower --lr or a smaller --max-norm"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.max_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            n = images.shape[0]
            seen += n
            loss_sum += loss_value * n
            rate = seen / max(time.perf_counter() - started, 1e-9)
            for cb in callbacks:
                cb.on_batch_end(epoch, batch, batches, loss_value / ln2, rate, optimizer.param_groups[0]["lr"])
        train_seconds = time.perf_counter() - started

        test = evaluate(model, test_loader, spec, device, lambda d, t: [cb.on_eval(epoch, d, t) for cb in callbacks])
        samples_path = None
        if config.epoch_samples:
            uniforms = draw_uniforms(config.epoch_samples, spec.channels, spec.height, spec.width,
                                     None if config.seed is None else config.seed + epoch)
            levels = sample(model, spec, epoch_labels(config.epoch_samples, spec), uniforms,
                            on_step=lambda d, t: [cb.on_sampling(epoch, d, t) for cb in callbacks])
            samples_path = str(save_levels_grid(levels, spec.color_levels, run_dir / "samples" / f"epoch_{epoch:03d}.png"))
        improved = math.isfinite(test.bits_per_dim) and test.bits_per_dim < best
        metrics = EpochMetrics(
            epoch=epoch, step=step, train_bits_per_dim=loss_sum / max(seen, 1) / ln2,
            test_bits_per_dim=test.bits_per_dim, test_nats_per_image=test.nats_per_image,
            learning_rate=optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - started,
            images_per_second=seen / max(train_seconds, 1e-9), samples=samples_path, best=improved,
        )
        if improved:
            best = test.bits_per_dim
        payload = {
            "config": config.model_dump(mode="json"),
            "spec": spec_to_dict(spec),
            "model_options": model_options,
            "plugins": plugins,
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(),
            "epoch": epoch,
            "step": step,
            "best_bits_per_dim": best,
            "metrics": metrics.as_dict(),
        }
        save_checkpoint(run_dir / "checkpoints" / "last.pt", payload)
        if improved:
            save_checkpoint(run_dir / "checkpoints" / "best.pt", payload)
        with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics.as_dict()) + "\n")
        result.epochs.append(metrics)
        for cb in callbacks:
            cb.on_epoch_end(metrics)
    for cb in callbacks:
        cb.on_train_end(result)
    return result
