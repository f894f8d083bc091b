"""Resuming: what a checkpoint must hold, which options may change, and the random states."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_checkpoint, resume_target, run_dir_of
from ..config import TrainConfig, merge, validate
from ..errors import CheckpointError, ConfigError

# Options a resumed run may change; every other option must match the checkpoint's.
RESUME_MAY_CHANGE = (
    "epochs", "max_steps", "max_minutes", "learning_rate", "max_norm", "device", "num_workers", "data_dir", "download",
    "epoch_samples", "limit_test_batches", "checkpoint_every", "wandb", "wandb_project", "precision", "compile",
    "deterministic", "log_every",
)


@dataclass
class ResumePoint:
    """A checkpoint to resume from, loaded once (the CLI reads its config before training)."""

    path: Path
    checkpoint: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return run_dir_of(self.path)

    @property
    def config(self) -> TrainConfig:
        try:
            return TrainConfig.model_validate(self.checkpoint["config"])
        except Exception:
            raise CheckpointError(f"{self.path}: its config is unreadable by this pixelcnn version") from None


def load_resume(target: str | Path | ResumePoint) -> ResumePoint:
    """Load what ``--resume RUN_DIR_OR_CHECKPOINT`` points at, checking it can be resumed."""
    if isinstance(target, ResumePoint):
        return target
    path = resume_target(target)
    checkpoint = load_checkpoint(path, map_location="cpu")
    if not isinstance(checkpoint.get("train_state"), dict):
        raise CheckpointError(f"{path} holds no training state to resume from (written by an older pixelcnn?)")
    point = ResumePoint(path, checkpoint)
    point.run_dir  # noqa: B018  (checks the checkpoint sits in a run folder)
    return point


def _flag(name: str) -> str:
    return {"learning_rate": "--lr", "dataset_options": "--dataset-option", "model_options": "--model-option"}.get(
        name, "--" + name.replace("_", "-")
    )


def check_resume_config(saved: TrainConfig, config: TrainConfig) -> None:
    """One line per option that differs from the run's and may not change on resume."""
    problems = []
    for name in TrainConfig.model_fields:
        if name in RESUME_MAY_CHANGE:
            continue
        old, new = getattr(saved, name), getattr(config, name)
        if old != new:
            problems.append(f"{_flag(name)}: cannot change when resuming (the run has {old!r}, got {new!r})")
    if problems:
        raise ConfigError("\n".join(problems))


def resume_config(point: ResumePoint, overrides: dict[str, Any]) -> TrainConfig:
    """The run's saved config with ``overrides`` (flags and config-file values) applied and checked."""
    saved = point.config
    config = validate(TrainConfig, merge(saved.model_dump(mode="json"), overrides))
    check_resume_config(saved, config)
    return config



def rng_states(device: torch.device) -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any], device: torch.device) -> None:
    if isinstance(states.get("torch"), torch.Tensor):
        torch.set_rng_state(states["torch"].cpu())
    cuda = states.get("cuda")
    if device.type == "cuda" and isinstance(cuda, list) and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])

