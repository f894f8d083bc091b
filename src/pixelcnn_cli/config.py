"""Pydantic models for every command: the single source of defaults and validation.

Defaults are the seed's (``--epochs 25 --batch-size 32 --color-levels 2`` ...). Options flow
as plain dicts: pydantic defaults <- ``--config FILE`` <- explicit flags, then one
``model_validate``; unknown keys are refused (``extra="forbid"``).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _odd_kernel(value: int) -> int:
    if value < 1 or value % 2 == 0:
        raise ValueError(f"must be a positive odd number (got {value})")
    return value


def _causal_kernel(value: int) -> int:
    # The pixels to the left in a pixel's own row reach it only through the horizontal stack,
    # whose first (mask-A) kernel covers k // 2 of them; later layers pass on only what it saw.
    # With k = 1 that is just the earlier colours of each pixel itself, so no pixel ever sees
    # the last colour (for grey images: anything) of the earlier pixels in its row. A 1x1
    # mask-B kernel is fine: it adds no reach but hides nothing.
    if value < 3 or value % 2 == 0:
        why = (": a 1x1 mask-A kernel leaves each pixel blind to the earlier pixels of its own row "
               "(to their last colour, for RGB)") if value == 1 else ""
        raise ValueError(f"must be an odd number of at least 3 (got {value}){why}")
    return value


class ArchitectureConfig(_Strict):
    """The gated PixelCNN's shape, with the seed's defaults."""

    causal_ksize: int = Field(7, description="Kernel size of the causal (mask A) convolution; odd, at least 3")
    hidden_ksize: int = Field(7, description="Kernel size of the hidden (mask B) convolutions; odd")
    hidden_fmaps: int = Field(30, gt=0, description="Feature maps in the hidden layers (divisible by the data channels)")
    out_hidden_fmaps: int = Field(10, gt=0, description="Feature maps in the output block")
    hidden_layers: int = Field(6, ge=1, description="Number of gated blocks with mask B")

    _check_causal_kernel = field_validator("causal_ksize")(_causal_kernel)
    _check_hidden_kernel = field_validator("hidden_ksize")(_odd_kernel)


class TrainConfig(ArchitectureConfig):
    """Everything ``pixelcnn train`` needs; saved in the run folder and every checkpoint."""

    # Which preset the values came from, as history: the name is checked where a preset is applied
    # (presets.with_preset), so a checkpoint made with a preset since renamed still loads.
    preset: str | None = Field(None, description="Named settings filled in under the config file and flags (see `pixelcnn train --help`)")

    dataset: str = Field("mnist", description="Dataset to train on (see `pixelcnn plugins`)")
    data_dir: str = Field(".data", description="Folder holding (or receiving) dataset files")
    download: bool = Field(True, description="Download missing dataset files")
    dataset_options: dict[str, Any] = Field(default_factory=dict, description="Options for the dataset plugin")
    model: str = Field("gated", description="Model plugin to train")
    model_options: dict[str, Any] = Field(default_factory=dict, description="Extra options for the model plugin")
    color_levels: int = Field(2, ge=2, le=65536, description="Levels each colour channel is quantised into (at most 256; codes: their number, taken from the data)")
    unconditional: bool = Field(False, description="Train without class labels")
    epochs: int = Field(25, gt=0, description="Number of epochs")
    batch_size: int = Field(32, gt=0, description="Images per mini-batch (per process under torchrun)")
    learning_rate: float = Field(1e-4, gt=0, description="Adam learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="Adam weight decay")
    adam_betas: tuple[float, float] = Field(
        (0.9, 0.999), description="Adam's two moment decays, beta1 beta2, each in [0, 1) (PixelCNN++: 0.95 0.9995)"
    )
    max_norm: float = Field(1.0, ge=0, description="Gradient norm clipping threshold (0: no clipping)")
    lr_schedule: Literal["constant", "cyclic", "cosine", "exponential", "decay"] = Field(
        "cyclic", description="Learning-rate schedule: cyclic (the seed's lr..10*lr triangle), cosine, exponential (to lr/100 at the end), decay (times --lr-decay every step, as PixelCNN++), constant"
    )
    lr_decay: float = Field(0.999995, gt=0, le=1, description="Per-step factor of the decay schedule (PixelCNN++: 0.999995)")
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warm-up steps")
    epoch_samples: int = Field(25, ge=0, description="Images sampled after each epoch (0: none)")
    output_dir: str = Field("runs", description="Folder that holds one folder per run")
    run_name: str | None = Field(None, description="Name of the run folder [default: the dataset and the start time, e.g. mnist-20261204-201500]")
    overwrite: bool = Field(False, description="Replace an existing run folder of the same name")
    seed: int | None = Field(None, description="Random seed for a repeatable run [default: none, a fresh draw each run]")
    device: str | None = Field(None, description="torch device (default: cuda when available, else cpu)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    limit_train_batches: int | None = Field(None, gt=0, description="Use at most this many training batches per epoch [default: all]")
    limit_test_batches: int | None = Field(None, gt=0, description="Evaluate on at most this many test batches per epoch [default: all]")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimiser steps in all (the schedule ends there) [default: no limit]")
    max_minutes: float | None = Field(None, gt=0, description="Stop after this many minutes of training steps in all "
                                      "(evaluation not counted), then evaluate and save [default: no limit]")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="Training arithmetic: fp32, or bf16 autocast (fast on recent GPUs; eval and sampling stay fp32)"
    )
    compile: bool = Field(False, description="Compile the model with torch.compile (slow start, faster steps on GPUs)")
    deterministic: bool = Field(
        False, description="Deterministic algorithms only (cuDNN, cuBLAS, embeddings), so --seed and --resume repeat a GPU run bit for bit; slower on GPUs. The CPU is deterministic anyway"
    )
    log_every: int | None = Field(
        None, gt=0, description="Report progress, check for NaN and (under torchrun) agree on stopping every N steps; the host waits for the GPU only then [default: every step on the CPU, every 20 on a GPU]"
    )
    ema: float = Field(0.0, ge=0, lt=1, description="Decay of the moving average of the weights used to evaluate, sample and pick the best (e.g. 0.999; 0: off)")
    checkpoint_every: int = Field(0, ge=0, description="Also save checkpoints/last.pt every N steps inside an epoch (0: at epoch ends only)")
    wandb: bool = Field(False, description="Log to Weights & Biases")
    wandb_project: str = Field("pixelcnn", description="Weights & Biases project")

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= beta < 1 for beta in value):
            raise ValueError(f"each must be in [0, 1) (got {value[0]} {value[1]})")
        return value

    @field_validator("run_name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value or value in {".", ".."}):
            raise ValueError("must be a plain folder name")
        return value

    def architecture(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ArchitectureConfig.model_fields}


#: Side of the smallest image a causality check runs on (causality.py): a 1x1 image has no earlier
#: pixel (only earlier colours), so a model blind to its own row or to the row above would pass.
MIN_CHECK_SIZE = 2

SAMPLERS = ("naive", "cached")  # see sampling.py
DEFAULT_SAMPLER = "cached"


class SampleConfig(_Strict):
    model_path: str | None = None
    output_fname: str = "samples/samples.png"
    label: int = -1
    count: int = Field(64, gt=0)
    height: int | None = Field(None, gt=0)
    width: int | None = Field(None, gt=0)
    temperature: float = Field(1.0, gt=0)
    seed: int | None = None
    device: str | None = None

    @field_validator("output_fname")
    @classmethod
    def _png(cls, value: str) -> str:
        if not value.lower().endswith(".png"):
            raise ValueError(f"must be a .png file (got {value!r})")
        return value

    @field_validator("label")
    @classmethod
    def _label(cls, value: int) -> int:
        if value < -1:
            raise ValueError("must be -1 (random labels) or a class index")
        return value


def format_validation_error(error: ValidationError, names: dict[str, str] | None = None) -> str:
    """Render pydantic's errors as ``field: message`` lines (one per bad field); ``names`` maps a
    field to what the user typed for it (a command's flag), shown in its place."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        if loc and names and loc[0] in names:
            loc[0] = names[loc[0]]
        field = ".".join(loc) or "config"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown option"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        lines.append(f"{field}: {message}")
    return "\n".join(lines)


def validate(model: type[BaseModel], data: dict[str, Any], names: dict[str, str] | None = None) -> Any:
    """``model.model_validate(data)``, with a :class:`ConfigError` of one line per bad field, each
    named as in ``names`` where it has an entry there (the flag the user typed)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, names)) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON config file into a plain dict (keys may use - or _)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file must be .toml, .yaml, .yml or .json: {path}")
    except ConfigError:
        raise
    except Exception as error:  # each parser raises its own kind
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"cannot parse config file {path}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of options")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def merge(defaults_file: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """File values, overridden by flags the user actually gave (``None`` means not given)."""
    merged = dict(defaults_file)
    for key, value in flags.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
