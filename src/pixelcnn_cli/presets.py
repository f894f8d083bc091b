"""Presets: known-good architecture and optimiser settings, by name.

A preset is a table of ``pixelcnn train`` options filled in *under* the config file and the
flags: ``pydantic defaults <- preset <- --config FILE <- flags``. Without a preset every option
keeps the seed's default. The chosen name is kept in the config (``preset``), and the run folder
and checkpoints record the resolved values with it.

The paper presets give the published CIFAR-10 settings (what each paper left open is said in
``source``); the ``*-cpu`` ones were chosen by measurement on a 2-core CPU
(``benchmarks/presets.py``; the figures are in the README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import ArchitectureConfig, TrainConfig
from .errors import ConfigError

if TYPE_CHECKING:  # torch is not imported at run time: --help reads the presets and stays quick
    import torch


@dataclass(frozen=True)
class Preset:
    name: str
    purpose: str  # one line: what it is for
    source: str  # where the values come from
    values: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "gated-paper-cifar",
        "the Gated PixelCNN paper's CIFAR-10 model: 20 gated layers of 384 maps, unconditional, 256 levels (GPU-sized)",
        "van den Oord et al. 2016 (arXiv 1606.05328) sec. 3.1: unconditional CIFAR-10 at 256 levels, 20 layers, "
        "384 hidden units, 5x5 filters, batch 128, 200k updates; the 7x7 mask-A first layer and the 1024-map "
        "output block are those of arXiv 1601.06759. The paper names no optimiser, so we chose Adam 1e-3 "
        "(betas 0.9 0.999) with PixelCNN++'s decay of 0.999995 a step, clipping at 1, no weight decay or "
        "averaging. batch_size is per process: under torchrun on 8 processes pass --batch-size 16 for the paper's 128.",
        {"model": "gated", "dataset": "cifar", "color_levels": 256, "unconditional": True,
         "causal_ksize": 7, "hidden_ksize": 5, "hidden_fmaps": 384, "out_hidden_fmaps": 1024,
         "hidden_layers": 20, "batch_size": 128, "max_steps": 200_000, "epochs": 512,
         "learning_rate": 1e-3, "adam_betas": (0.9, 0.999), "lr_schedule": "decay", "lr_decay": 0.999995,
         "weight_decay": 0.0, "max_norm": 1.0, "ema": 0.0},
    ),
    Preset(
        "pixelcnnpp-paper-cifar",
        "the PixelCNN++ paper's CIFAR-10 model: 5 resnets per stage, 160 filters, 10 mixtures, unconditional, "
        "256 levels (GPU-sized)",
        "Salimans et al. 2017 (arXiv 1701.05517) and openai/pixel-cnn's train.py (commit 2010d6d): unconditional "
        "CIFAR-10 at 256 levels, Adam 1e-3 with beta1 0.95 and beta2 0.9995 decayed by 0.999995 every step, "
        "dropout 0.5, Polyak averaging 0.9995, no weight decay or clipping, 16 images per GPU on 8 GPUs (batch "
        "128), its max_epochs of 5000 (the paper gives no step count). batch_size is per process: this preset's "
        "128 is one process; under torchrun on 8 processes pass --batch-size 16 for the paper's 128. Weight "
        "normalisation with data-dependent init from the first 16 training images (train.py's init_batch_size; "
        "openai draws them at random, we take them by index so every process sees the same).",
        {"model": "pixelcnnpp", "dataset": "cifar", "color_levels": 256, "unconditional": True,
         "model_options": {"nr_resnet": 5, "nr_filters": 160, "nr_logistic_mix": 10, "dropout": 0.5,
                           "weight_norm": True},
         "batch_size": 128, "epochs": 5000, "learning_rate": 1e-3, "adam_betas": (0.95, 0.9995),
         "lr_schedule": "decay", "lr_decay": 0.999995, "ema": 0.9995, "weight_decay": 0.0, "max_norm": 0.0},
    ),
    Preset(
        "pixelsnail-paper-cifar",
        "the PixelSNAIL paper's CIFAR-10 model: 12 attention blocks after 4 resnets each, 256 filters, 10 mixtures, "
        "unconditional, 256 levels (GPU-sized)",
        "Chen et al. 2017 (arXiv 1712.09763) and the authors' neocxi/pixelsnail-public (commit db1f4ec): its README's "
        "CIFAR-10 run (model h12_noup_smallkey: keys and queries of 16 channels, values of nr_filters / 2; "
        "nr_filters 256, 10 mixtures, dropout 0.5, Polyak averaging 0.9995, 8 images per GPU) with train.py's "
        "defaults for the rest: 4 resnets per block, elu inside the blocks, Adam 1e-3 with beta1 0.95 and beta2 "
        "0.9995 decayed by 0.999998 every step, max_epochs 5000, no weight decay or clipping, weight normalisation "
        "with data-dependent init. Left open there and chosen here: the number of GPUs (the README says 'a machine "
        "with multiple GPUs'; this preset's batch 64 is 8 x 8, one process: under torchrun on 8 processes pass "
        "--batch-size 8), Adam's epsilon (theirs 1e-6, ours PyTorch's 1e-8), the init batch (theirs 8 random "
        "images, ours the first 16 by index).",
        {"model": "pixelsnail", "dataset": "cifar", "color_levels": 256, "unconditional": True,
         "model_options": {"nr_resnet": 4, "nr_filters": 256, "attention_blocks": 12, "key_size": 16,
                           "value_size": 128, "nr_logistic_mix": 10, "dropout": 0.5, "nonlinearity": "elu",
                           "weight_norm": True},
         "batch_size": 64, "epochs": 5000, "learning_rate": 1e-3, "adam_betas": (0.95, 0.9995),
         "lr_schedule": "decay", "lr_decay": 0.999998, "ema": 0.9995, "weight_decay": 0.0, "max_norm": 0.0},
    ),
    Preset(
        "gated-cpu",
        "a gated PixelCNN that learns 256 levels in minutes on a laptop CPU",
        "chosen by measurement on a 2-core CPU (benchmarks/presets.py)",
        {"model": "gated", "causal_ksize": 7, "hidden_ksize": 5, "hidden_fmaps": 30, "out_hidden_fmaps": 64,
         "hidden_layers": 6, "batch_size": 32, "learning_rate": 3e-3, "lr_schedule": "constant",
         "weight_decay": 0.0, "max_norm": 1.0, "ema": 0.999},
    ),
    Preset(
        "pixelcnnpp-cpu",
        "a small PixelCNN++ that learns 256 levels in minutes on a laptop CPU (the best of these, grey and RGB)",
        "chosen by measurement on a 2-core CPU (benchmarks/presets.py)",
        {"model": "pixelcnnpp",
         "model_options": {"nr_resnet": 1, "nr_filters": 32, "nr_logistic_mix": 5, "dropout": 0.0},
         "batch_size": 16, "learning_rate": 2e-3, "lr_schedule": "constant",
         "weight_decay": 0.0, "max_norm": 0.0, "ema": 0.999},
    ),
    Preset(
        "pixelsnail-cpu",
        "a small PixelSNAIL for a laptop CPU: one attention block over a PixelCNN++-cpu-sized stream",
        "chosen by measurement on a 2-core CPU (benchmarks/presets.py, 3-minute runs of six candidates on grey and "
        "RGB): one attention block beat two (and two resnets, 48 filters, 10 mixtures) on RGB and was within 0.01 "
        "bits/dim of the best on grey, at about twice the speed of two",
        {"model": "pixelsnail",
         "model_options": {"nr_resnet": 1, "nr_filters": 32, "attention_blocks": 1, "key_size": 16,
                           "value_size": 16, "nr_logistic_mix": 5, "dropout": 0.0, "nonlinearity": "elu"},
         "batch_size": 16, "learning_rate": 2e-3, "lr_schedule": "constant",
         "weight_decay": 0.0, "max_norm": 0.0, "ema": 0.999},
    ),
)}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None


def with_preset(file_values: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """The preset named by the flags or the config file, as the layer under the file's values.

    Returns the preset's values (with ``preset`` set), or ``{}`` without one. A preset made for one
    model does not silently mix with another: ``--model`` naming a different one is an error.
    """
    name = flags.get("preset") or file_values.get("preset")
    if not name:
        return {}
    chosen = preset(str(name))
    model = flags.get("model") or file_values.get("model")
    wanted = chosen.values.get("model")
    if model is not None and wanted is not None and model != wanted:
        raise ConfigError(f"--preset {chosen.name} is for --model {wanted}, not {model}; drop one of the two")
    return {**chosen.values, "preset": chosen.name}


def describe() -> str:
    """One line per preset, for ``--help``."""
    return "; ".join(f"{p.name}: {p.purpose}" for p in PRESETS.values())


def small_defaults_hint(config: TrainConfig) -> str | None:
    """A one-line hint when the seed's small gated defaults meet many colour levels without a preset.

    The seed's 30-map network with a 10-map output block and lr 1e-4 barely moves a 256-way
    softmax per colour in CPU minutes (README, "Presets").
    """
    if config.preset is not None or config.model != "gated" or not 64 <= config.color_levels <= 256 or config.dataset == "codes":
        return None
    seed = ArchitectureConfig()
    defaults = TrainConfig.model_fields
    if config.architecture() != seed.model_dump() or config.learning_rate != defaults["learning_rate"].default:
        return None
    return (f"hint: the seed's small defaults learn {config.color_levels} levels slowly; --preset pixelcnnpp-cpu "
            "(or gated-cpu) learns faster: 4.0 against 7.3 bits/dim on RGB after 10 CPU minutes (README: Presets)")


#: Parameters from which a model is sized for a GPU: at this size a step on a laptop CPU takes
#: seconds (PixelCNN++'s paper model, 53.6M, takes minutes and 13 GB on Fashion-MNIST), while the
#: ``*-cpu`` presets are well under 1M.
GPU_SIZED_PARAMETERS = 5_000_000


def gpu_sized_hint(config: TrainConfig, parameter_count: int, device: torch.device | str) -> str | None:
    """A one-line hint when a GPU-sized model is about to train on the CPU, naming the model's CPU preset."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind != "cpu" or parameter_count < GPU_SIZED_PARAMETERS:
        return None
    cpu = f"{config.model}-cpu"
    advice = (f"on the CPU --preset {cpu} trains in minutes" if cpu in PRESETS
              else "on the CPU a smaller model trains in minutes")
    return (f"hint: this {config.model} has {parameter_count / 1e6:.1f}M parameters, sized for a GPU; "
            f"{advice} (README: Presets)")
