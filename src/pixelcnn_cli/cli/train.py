"""``pixelcnn train``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import config as cfg
from ..config import TrainConfig
from ..training import train as run_training
from . import common
from .common import default, device_from_flags, parse_key_values, user_errors
from .progress import TrainingProgress

T = TrainConfig


@user_errors
def train(
    config_file: Annotated[Optional[str], typer.Option("--config", help="TOML or YAML file with any of these options; flags win")] = None,
    epochs: Annotated[Optional[int], typer.Option(help=default(T, "epochs"))] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=default(T, "batch_size"))] = None,
    dataset: Annotated[Optional[str], typer.Option(help=default(T, "dataset"))] = None,
    data_dir: Annotated[Optional[str], typer.Option(help=default(T, "data_dir"))] = None,
    download: Annotated[Optional[bool], typer.Option("--download/--no-download", help=default(T, "download"))] = None,
    causal_ksize: Annotated[Optional[int], typer.Option(help=default(T, "causal_ksize"))] = None,
    hidden_ksize: Annotated[Optional[int], typer.Option(help=default(T, "hidden_ksize"))] = None,
    color_levels: Annotated[Optional[int], typer.Option(help=default(T, "color_levels"))] = None,
    hidden_fmaps: Annotated[Optional[int], typer.Option(help=default(T, "hidden_fmaps"))] = None,
    out_hidden_fmaps: Annotated[Optional[int], typer.Option(help=default(T, "out_hidden_fmaps"))] = None,
    hidden_layers: Annotated[Optional[int], typer.Option(help=default(T, "hidden_layers"))] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", "--lr", help=default(T, "learning_rate"))] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help=default(T, "weight_decay"))] = None,
    max_norm: Annotated[Optional[float], typer.Option(help=default(T, "max_norm"))] = None,
    lr_schedule: Annotated[Optional[str], typer.Option(help=default(T, "lr_schedule"))] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(help=default(T, "warmup_steps"))] = None,
    epoch_samples: Annotated[Optional[int], typer.Option(help=default(T, "epoch_samples"))] = None,
    unconditional: Annotated[Optional[bool], typer.Option("--unconditional/--conditional", help=default(T, "unconditional"))] = None,
    model: Annotated[Optional[str], typer.Option(help=default(T, "model"))] = None,
    dataset_option: Annotated[Optional[list[str]], typer.Option(help="key=value option for the dataset plugin (repeatable)")] = None,
    model_option: Annotated[Optional[list[str]], typer.Option(help="key=value option for the model plugin (repeatable)")] = None,
    output_dir: Annotated[Optional[str], typer.Option(help=default(T, "output_dir"))] = None,
    run_name: Annotated[Optional[str], typer.Option(help=default(T, "run_name"))] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite", help=default(T, "overwrite"))] = None,
    seed: Annotated[Optional[int], typer.Option(help=default(T, "seed"))] = None,
    cuda: Annotated[Optional[bool], typer.Option("--cuda/--no-cuda", help="Use CUDA (default: when available)")] = None,
    device: Annotated[Optional[str], typer.Option(help=default(T, "device"))] = None,
    num_workers: Annotated[Optional[int], typer.Option(help=default(T, "num_workers"))] = None,
    limit_train_batches: Annotated[Optional[int], typer.Option(help=default(T, "limit_train_batches"))] = None,
    wandb: Annotated[Optional[bool], typer.Option("--wandb/--no-wandb", help=default(T, "wandb"))] = None,
    wandb_project: Annotated[Optional[str], typer.Option(help=default(T, "wandb_project"))] = None,
) -> None:
    """Train a PixelCNN; leaves a run folder with checkpoints, sample grids and metrics."""
    flags = dict(locals())
    file_values = cfg.read_config_file(flags.pop("config_file")) if config_file else {}
    flags["device"] = device_from_flags(flags.pop("device"), flags.pop("cuda"))
    flags["dataset_options"] = parse_key_values(flags.pop("dataset_option"), "--dataset-option")
    flags["model_options"] = parse_key_values(flags.pop("model_option"), "--model-option")
    config = cfg.validate(TrainConfig, cfg.merge(file_values, flags))
    result = run_training(config, [TrainingProgress(common.err)])

    table = Table(title=f"run {result.run_dir}", show_edge=False)
    for column in ("epoch", "train bits/dim", "test bits/dim", "test nats/image", "img/s", "seconds"):
        table.add_column(column, justify="right")
    for m in result.epochs:
        mark = " *" if result.best is m else ""
        table.add_row(str(m.epoch), f"{m.train_bits_per_dim:.4f}", f"{m.test_bits_per_dim:.4f}{mark}",
                      f"{m.test_nats_per_image:.2f}", f"{m.images_per_second:,.0f}", f"{m.seconds:.1f}")
    common.out.print(table)
    best = result.best
    if best is not None:
        common.out.print(f"best: epoch {best.epoch}, test {best.test_bits_per_dim:.4f} bits/dim -> {result.run_dir / 'checkpoints' / 'best.pt'}")
