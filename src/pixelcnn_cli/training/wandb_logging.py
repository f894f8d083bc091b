"""Weights & Biases logging as a training callback (only imported with ``--wandb``).

Logs what the seed logged: training loss, test bits/dim, sample grids and gradient
histograms (``wandb.watch``). ``WANDB_MODE=offline`` works with no login. A resumed run
(``pixelcnn train --resume``) continues the same wandb run (its id is kept in the run folder,
``wandb-run-id``) from the step it had reached. Under torchrun only rank 0 logs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError
from .callbacks import Callback, EpochMetrics, RunInfo, TrainResult


def _import_wandb():
    try:
        import wandb
    except ImportError:
        raise ConfigError("--wandb needs the wandb package: pip install 'pixelcnn-cli[wandb]'") from None
    return wandb


def check_ready() -> None:
    """Fail early (before a run folder is made) when wandb is missing or has no login."""
    wandb = _import_wandb()
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode not in {"offline", "disabled", "dryrun"} and not (os.environ.get("WANDB_API_KEY") or _logged_in(wandb)):
        raise ConfigError("wandb: not logged in; run `wandb login`, set WANDB_API_KEY, or set WANDB_MODE=offline")


class WandbCallback(Callback):
    def __init__(self, config: TrainConfig, run_dir: Path):
        self.wandb = _import_wandb()
        self.config = config
        self.run_dir = run_dir
        self.run = None
        self.step = 0
        self.epoch, self.batch = 1, 0  # where the last report was

    def on_train_start(self, info: RunInfo, model: nn.Module) -> None:
        wandb = self.wandb
        check_ready()
        id_file = self.run_dir / "wandb-run-id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        self.step = info.start_step
        self.epoch, self.batch = info.start_epoch, info.start_batch
        try:
            self.run = wandb.init(
                project=self.config.wandb_project,
                name=self.run_dir.name,
                dir=str(self.run_dir),
                config={**self.config.model_dump(mode="json"), "parameters": info.parameters},
                id=run_id or secrets.token_hex(4),
                resume="allow",
            )
            if run_id is None:
                id_file.write_text(self.run.id)
        except Exception as error:  # wandb raises its own error types for login and network trouble
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(f"wandb: could not start a run: {first}") from None
        self.run.watch(model, log="gradients", log_freq=100)

    def on_batch_end(self, epoch, batch, batches, loss_bits, images_per_second, lr) -> None:
        # reports come every --log-every steps: advance by the batches done since the last one
        if epoch != self.epoch:
            self.epoch, self.batch = epoch, 0
        self.step += batch - self.batch
        self.batch = batch
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
