"""``pixelcnn train``."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import config as cfg
from .. import presets, registry
from ..config import TrainConfig
from ..errors import PixelCNNError
from . import common
from .common import completes, default, device_from_flags, fail, parse_key_values, user_errors
from .options import Cuda, Device, TrainRunsDir

T = TrainConfig


def _config_and_resume_point(resume_from: str | None, file_values: dict, flags: dict, names: dict, rank: int):
    """The run's config and the checkpoint it continues from (None: a fresh run). ``--resume auto``
    continues the run named by --run-name if it has a checkpoint and starts it otherwise."""
    from ..training import AUTO, auto_resume, load_resume, resume_config

    point = None
    if resume_from is not None and resume_from != AUTO:
        point = load_resume(resume_from)
    else:
        layered = cfg.merge(cfg.merge(presets.with_preset(file_values, flags), file_values), flags)
        config = cfg.validate(TrainConfig, layered, names)
        if resume_from == AUTO:
            point, run_dir = auto_resume(config), Path(config.output_dir) / config.run_name
            if point is None and run_dir.exists():  # a launch that died before its first checkpoint
                if rank == 0:
                    common.err.print(f"--resume auto: {run_dir} has no checkpoint yet; starting it over", highlight=False)
                config = config.model_copy(update={"overwrite": True})
        if point is None:
            hint = presets.small_defaults_hint(config)
            if hint and rank == 0:
                common.err.print(hint, style="yellow", highlight=False)
            return config, None
    return resume_config(point, cfg.merge(file_values, flags)), point


def resume_command(run_dir: Path | None) -> str:
    """The exact command that carries on an interrupted run (torchrun's when launched by it)."""
    target = shlex.quote(str(run_dir)) if run_dir is not None else "RUN_FOLDER"
    world = os.environ.get("WORLD_SIZE", "1")
    if world.isdigit() and int(world) > 1:
        local = os.environ.get("LOCAL_WORLD_SIZE", world)
        launcher = f"torchrun --standalone --nproc-per-node {local}" if local == world else "torchrun (with the same options)"
        return f"{launcher} -m pixelcnn_cli train --resume {target}"
    return f"pixelcnn train --resume {target}"


@user_errors
def train(
    ctx: typer.Context,
    config_file: Annotated[Optional[str], typer.Option("--config", help="TOML or YAML file with any of these options; flags win")] = None,
    preset: Annotated[Optional[str], typer.Option(
        help=f"Known-good settings by name, under --config and the flags. {presets.describe()}",
        autocompletion=completes(lambda: presets.PRESETS))] = None,
    epochs: Annotated[Optional[int], typer.Option(help=default(T, "epochs"))] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=default(T, "batch_size"))] = None,
    dataset: Annotated[Optional[str], typer.Option(help=default(T, "dataset"), autocompletion=completes(registry.datasets.names))] = None,
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
    adam_betas: Annotated[Optional[tuple[float, float]], typer.Option(
        metavar="B1 B2", help=default(T, "adam_betas"))] = None,
    max_norm: Annotated[Optional[float], typer.Option(help=default(T, "max_norm"))] = None,
    lr_schedule: Annotated[Optional[str], typer.Option(help=default(T, "lr_schedule"))] = None,
    lr_decay: Annotated[Optional[float], typer.Option(help=default(T, "lr_decay"))] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(help=default(T, "warmup_steps"))] = None,
    epoch_samples: Annotated[Optional[int], typer.Option(help=default(T, "epoch_samples"))] = None,
    unconditional: Annotated[Optional[bool], typer.Option("--unconditional/--conditional", help=default(T, "unconditional"))] = None,
    model: Annotated[Optional[str], typer.Option(help=default(T, "model"), autocompletion=completes(registry.models.names))] = None,
    dataset_option: Annotated[Optional[list[str]], typer.Option(help="key=value option for the dataset plugin (repeatable)")] = None,
    model_option: Annotated[Optional[list[str]], typer.Option(help="key=value option for the model plugin (repeatable)")] = None,
    output_dir: TrainRunsDir = None,
    run_name: Annotated[Optional[str], typer.Option(help=default(T, "run_name"))] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite", help=default(T, "overwrite"))] = None,
    seed: Annotated[Optional[int], typer.Option(help=default(T, "seed"))] = None,
    cuda: Cuda = None,
    device: Device = None,
    num_workers: Annotated[Optional[int], typer.Option(help=default(T, "num_workers"))] = None,
    limit_train_batches: Annotated[Optional[int], typer.Option(help=default(T, "limit_train_batches"))] = None,
    limit_test_batches: Annotated[Optional[int], typer.Option(help=default(T, "limit_test_batches"))] = None,
    max_steps: Annotated[Optional[int], typer.Option(help=default(T, "max_steps"))] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help=default(T, "max_minutes"))] = None,
    ema: Annotated[Optional[float], typer.Option(help=default(T, "ema"))] = None,
    precision: Annotated[Optional[str], typer.Option(help=default(T, "precision"))] = None,
    compile_model: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help=default(T, "compile"))] = None,
    deterministic: Annotated[Optional[bool], typer.Option("--deterministic/--no-deterministic", help=default(T, "deterministic"))] = None,
    log_every: Annotated[Optional[int], typer.Option(help=default(T, "log_every"))] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help=default(T, "checkpoint_every"))] = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", help="Carry on a run: its folder (uses checkpoints/last.pt) or a checkpoint in it; 'auto' continues the "
                         "--run-name run if it has a checkpoint and starts it otherwise (one command for the first launch and "
                         "every restart). Its options are "
                         "reused; only --epochs, --max-steps, --max-minutes, --lr, --max-norm, --device/--cuda, --num-workers, --data-dir, "
                         "--download, --epoch-samples, --limit-test-batches, --checkpoint-every, --precision, --compile, --deterministic, --log-every and the wandb options may change")] = None,
    wandb: Annotated[Optional[bool], typer.Option("--wandb/--no-wandb", help=default(T, "wandb"))] = None,
    wandb_project: Annotated[Optional[str], typer.Option(help=default(T, "wandb_project"))] = None,
) -> None:
    """Train a PixelCNN; leaves a run folder with checkpoints, sample grids and metrics.

    Ctrl-C or SIGTERM saves checkpoints/last.pt and prints the command that resumes; a second
    Ctrl-C stops at once. Under torchrun each process trains on --batch-size images per step.
    """
    flags = dict(locals())
    # torch and the training package load here, not at import: --help and completion stay quick
    from ..distributed import PeerLost, env_rank
    from ..training import AUTO, RunFinished, TrainingInterrupted
    from ..training import train as run_training
    from .progress import ResumeNotice, TrainingProgress

    # a bad value is named by the flag that gave it (flags win), else by its config file and key
    names = {key: flag for key, flag in common.flag_names(flags.pop("ctx")).items() if flags.get(key) is not None}
    file_values = cfg.read_config_file(flags.pop("config_file")) if config_file else {}
    names = {**{key: f"{config_file}: {key}" for key in file_values}, **names}  # a file's bad key names the file
    flags["device"] = device_from_flags(flags.pop("device"), flags.pop("cuda"))
    flags["dataset_options"] = parse_key_values(flags.pop("dataset_option"), "--dataset-option")
    flags["model_options"] = parse_key_values(flags.pop("model_option"), "--model-option")
    flags["compile"] = flags.pop("compile_model")
    resume_from = flags.pop("resume")
    rank = env_rank()
    try:
        config, point = _config_and_resume_point(resume_from, file_values, flags, names, rank)
        result = run_training(config, [TrainingProgress(common.err), ResumeNotice(common.err)], resume=point)
    except RunFinished as done:
        if resume_from != AUTO:
            raise
        if rank == 0:  # the same command after the end: nothing to do, and not a failure to restart
            common.err.print(f"--resume auto: {done.reached}: nothing to do", highlight=False)
        return
    except TrainingInterrupted as stop:
        if rank != 0:
            sys.exit(stop.exit_code)
        how = "" if stop.checkpoint is None else (
            "; the same command again carries on from it (--resume auto)" if resume_from == AUTO
            else f"; resume with: {resume_command(stop.run_dir)}")
        fail(f"{stop}{how}", stop.exit_code)
        return
    except PixelCNNError as error:
        # rank 0 reports it (torchrun shows every rank's exit code); a lost peer is said by every
        # rank, since the one gone may be rank 0
        if isinstance(error, PeerLost):
            # out at once, past the interpreter's exit: with a peer gone, Gloo's teardown of the broken
            # group during exit can abort the process and add "terminate called ..." to the one line
            typer.echo(f"error: {error}", err=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(error.exit_code)
        if rank != 0:
            sys.exit(error.exit_code)
        raise
    if rank != 0:
        return

    _print_result(result)


def _print_result(result) -> None:
    """The table of epochs and the best checkpoint, in the unit of the data (bits/dim, or bits/code for codes)."""
    table = Table(title=f"run {result.run_dir}", show_edge=False)
    unit, item = ("bits/code", "map") if result.codes else ("bits/dim", "image")
    for column in ("epoch", f"train {unit}", f"test {unit}", f"test nats/{item}", "img/s", "seconds"):
        table.add_column(column, justify="right")
    for m in result.epochs:
        mark = " *" if result.best is m else ""
        table.add_row(str(m.epoch), f"{m.train_bits_per_dim:.4f}", f"{m.test_bits_per_dim:.4f}{mark}",
                      f"{m.test_nats_per_image:.2f}", f"{m.images_per_second:,.0f}", f"{m.seconds:.1f}")
    common.print_whole(table)
    best = result.best
    if best is not None:
        common.out.print(f"best: epoch {best.epoch}, test {best.test_bits_per_dim:.4f} {unit} -> {result.run_dir / 'checkpoints' / 'best.pt'}")
