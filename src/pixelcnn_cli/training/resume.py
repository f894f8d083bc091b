"""Resuming: what a checkpoint must hold, which options may change, whether the run has ended,
and the random states."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_checkpoint, resume_target, run_dir_of
from ..config import TrainConfig, merge, validate
from ..contracts import ModelSpec
from ..distributed import DistContext
from ..errors import CheckpointError, ConfigError
from .budget import Budget
from .state import RunState

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


#: ``--resume auto``: continue the run named by ``--run-name`` if it has a checkpoint, else start it
AUTO = "auto"


class RunFinished(ConfigError):
    """Resuming a run that already reached the end its options set (nothing to train); ``reached``
    says where it ended, without the advice."""

    def __init__(self, reached: str, advice: str):
        super().__init__(f"nothing to resume: {reached}; {advice}")
        self.reached = reached


def auto_resume(config: TrainConfig) -> ResumePoint | None:
    """What ``--resume auto`` continues: the named run's ``checkpoints/last.pt``, or None to start
    the run. A folder that an earlier launch of the run made before its first checkpoint (its
    ``config.json``, no checkpoint) is started over, so a restart after an early crash works; any
    other existing folder without ``last.pt`` is refused, never replaced."""
    if not config.run_name:
        raise ConfigError("--resume auto needs --run-name: the name says which run to continue or start")
    if config.overwrite:
        raise ConfigError("--resume auto never replaces a run; drop --overwrite")
    run_dir = Path(config.output_dir) / config.run_name
    last = run_dir / "checkpoints" / "last.pt"
    if last.is_file():
        return load_resume(last)
    if run_dir.exists() and not ((run_dir / "config.json").is_file() and not any(run_dir.rglob("*.pt"))):
        raise ConfigError(f"--resume auto: {run_dir} exists but has no checkpoints/last.pt to continue from; "
                          "resume from one of its checkpoints with --resume PATH, or choose another --run-name")
    return None


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

def resumed_state(point: ResumePoint, config: TrainConfig, budget: Budget) -> RunState:
    """The state to carry on from, refused when the run already reached the end ``config`` sets."""
    state = RunState.from_checkpoint(point.checkpoint)
    budget.spent = min(1.0, budget.share(state.trained_seconds))
    ended = state.evaluated and (budget.steps_done(state.step) or budget.out_of_time(state.trained_seconds))
    if state.epoch > config.epochs or ended:
        limits = "".join(f", {flag} {value}" for flag, value in
                         (("--max-steps", config.max_steps), ("--max-minutes", config.max_minutes)) if value is not None)
        raise RunFinished(
            f"{point.run_dir} already reached its end (step {state.step}, --epochs {config.epochs}{limits})",
            "pass a larger --epochs, --max-steps or --max-minutes to train longer",
        )
    return state


SPEC_KEYS = ("channels", "height", "width", "color_levels", "num_classes", "condition_codes", "condition_height",
             "condition_width")


def check_resume_spec(point: ResumePoint, spec: ModelSpec) -> None:
    """The data must still give what the run was trained on."""
    # a key newer than the checkpoint (the condition's) has its default there
    saved = {**{k: getattr(ModelSpec(1, 1, 1, 2), k) for k in SPEC_KEYS[5:]}, **point.checkpoint["spec"]}
    if any(saved.get(k) != getattr(spec, k) for k in SPEC_KEYS):
        now = ", ".join(f"{k} {getattr(spec, k)}" for k in SPEC_KEYS)
        was = ", ".join(f"{k} {saved.get(k)}" for k in SPEC_KEYS)
        raise ConfigError(f"the data no longer matches the run: it was trained on {was}, the data now gives {now}")


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


def restore_run_rng(state: RunState, ctx: DistContext, device: torch.device) -> None:
    """Each rank's random states as saved; saved by another number of processes, rank 0's stand
    in and each rank then draws a new stream."""
    states, stand_in = state.rng_for(ctx.rank, ctx.world_size)
    restore_rng(states, device)
    if stand_in and ctx.enabled:
        torch.manual_seed((int(torch.randint(0, 2**62, ())) + ctx.rank) % 2**63)
