"""Weights & Biases logging as a training callback (only imported with ``--wandb``).

Logs what the seed logged: training loss, test bits/dim, sample grids and gradient
histograms (``wandb.watch``). ``WANDB_MODE=offline`` works with no login.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .config import TrainConfig
from .errors import ConfigError
from .training import Callback, EpochMetrics, RunInfo, TrainResult


def _import_wandb():
    try:
        import wandb
    except ImportError:
        raise ConfigError("--wandb needs the wandb package: pip install 'pixelcnn-cli[wandb]'") from None
    return wandb


class WandbCallback(Callback):
    def __init__(self, config: TrainConfig, run_dir: Path):
        self.wandb = _import_wandb()
        self.config = config
        self.run_dir = run_dir
        self.run = None
        self.step = 0

    def on_train_start(self, info: RunInfo, model: nn.Module) -> None:
        wandb = self.wandb
        mode = os.environ.get("WANDB_MODE", "").lower()
        if mode not in {"offline", "disabled", "dryrun"} and not (os.environ.get("WANDB_API_KEY") or _logged_in(wandb)):
            raise ConfigError("wandb: not logged in; run `wandb login`, set WANDB_API_KEY, or set WANDB_MODE=offline")
        try:
            self.run = wandb.init(
                project=self.config.wandb_project,
                name=self.run_dir.name,
                dir=str(self.run_dir),
                config={**self.config.model_dump(mode="json"), "parameters": info.parameters},
            )
        except Exception as error:  # wandb raises its own error types for login and network trouble
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(f"wandb: could not start a run: {first}") from None
        self.run.watch(model, log="gradients", log_freq=100)

    def on_batch_end(self, epoch, batch, batches, loss_bits, images_per_second, lr) -> None:
        self.step += 1
        self.run.log({"train/bits_per_dim": loss_bits, "train/lr": lr, "epoch": epoch}, step=self.step)

    def on_epoch_end(self, metrics: EpochMetrics) -> None:
        data = {
            "test/bits_per_dim": metrics.test_bits_per_dim,
            "test/nats_per_image": metrics.test_nats_per_image,
            "train/epoch_bits_per_dim": metrics.train_bits_per_dim,
            "epoch": metrics.epoch,
        }
        if metrics.samples:
            data["samples"] = self.wandb.Image(metrics.samples, caption=f"epoch {metrics.epoch}")
        self.run.log(data, step=self.step)

    def on_train_end(self, result: TrainResult) -> None:
        if self.run is not None:
            self.run.finish()


def _logged_in(wandb) -> bool:
    """True when wandb has credentials; never prompts and never touches the network."""
    try:
        return bool(wandb.login(prompt=False, verify=False))
    except Exception:
        return False
