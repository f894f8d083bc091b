"""The options several commands repeat, declared once each as an ``Annotated`` type.

A command takes one as ``runs_dir: RunsDir = "runs"`` (the default stays in its signature; the
parameter's name gives the flag where no flag is named). Where commands really differ, each
variant is its own type, next to the shared one: every ``-m`` says what the checkpoint is for,
inspect-masks' ``--cuda`` defaults to the CPU, ``--tf32`` says what it costs where that differs.
tests/test_surface.py walks every command and checks that the shared ones agree.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .. import registry
from .common import completes

# -- -m/--model-path: the checkpoint a command loads ---------------------------------------

#: What ``-m`` means when it is left out (:func:`.checkpoint_choice.load_model` chooses).
NEWEST_CHECKPOINT = "[default: the newest run's best; with no run, the shipped model]"


def _model_path(help: str) -> Any:
    return typer.Option("--model-path", "-m", help=help)


def _checkpoint(purpose: str = "") -> Any:
    return _model_path(f"Checkpoint, run folder or pretrained:mnist-sample{purpose} {NEWEST_CHECKPOINT}")


ModelPath = Annotated[Optional[str], _checkpoint()]
SampleModelPath = Annotated[Optional[str], _checkpoint(" to sample from")]
EvalModelPath = Annotated[Optional[str], _checkpoint(" to evaluate")]
#: inspect-masks builds a fresh model unless given one
InspectModelPath = Annotated[Optional[str], _model_path(
    "Inspect a trained checkpoint (or pretrained:mnist-sample) instead of a fresh model")]

# -- --runs-dir ------------------------------------------------------------------------------

_RUNS_HELP = ("Folder that holds one folder per run: train writes there, and without -m the other commands "
              "use its newest run's best checkpoint [default: runs]")
#: The runs folder of every command but train: where runs are listed, drawn, or the newest is found
RunsDir = Annotated[str, typer.Option("--runs-dir", help=_RUNS_HELP, show_default=False)]
RunsFolder = RunsDir
#: train's: the config key stays ``output_dir`` (old config files and checkpoints); --output-dir is its old name
TrainRunsDir = Annotated[Optional[str], typer.Option("--runs-dir", "--output-dir", help=_RUNS_HELP, show_default=False)]

# -- the data a checkpoint is evaluated, scored or completed on ------------------------------------

Dataset = Annotated[Optional[str], typer.Option(
    help="Dataset to read images from [default: the one it was trained on]",
    autocompletion=completes(registry.datasets.names))]
Split = Annotated[str, typer.Option(help="Dataset split: test or train")]
DatasetOptions = Annotated[Optional[list[str]], typer.Option(
    "--dataset-option",
    help="key=value option for the dataset plugin (repeatable) [default: the training ones, for its dataset]")]
DataDir = Annotated[Optional[str], typer.Option(help="Dataset folder [default: the training one]")]
Download = Annotated[Optional[bool], typer.Option(
    "--download/--no-download", help="Download missing dataset files [default: as in training]")]

# -- --label --------------------------------------------------------------------------------------

#: One convention on sample and score: a class, or unset (-1, the seed's spelling) for none fixed
Label = Annotated[Optional[int], typer.Option(
    "--label", "--l", show_default=False,
    help="Class to condition on (class-conditional models). Unset or -1: none fixed; sample then draws random "
         "classes, score and sample --complete use each dataset image's own class (pictures without one: random "
         "classes for sample, the marginal log p(x) for score) [default: none fixed]")]

# -- the device: --cuda/--no-cuda, --device, --tf32 -------------------------------------------

#: Three-way: ``None`` (neither flag) lets the device be chosen automatically (common.device_from_flags)
Cuda = Annotated[Optional[bool], typer.Option("--cuda/--no-cuda", help="Use CUDA (default: when available)")]
#: inspect-masks' check is small: it runs on the CPU unless --cuda or --device asks otherwise
CpuUnlessCuda = Annotated[bool, typer.Option(
    "--cuda/--no-cuda", show_default=False,
    help="Run the check on CUDA [default: on the CPU, unlike the other commands (CUDA when available): "
         "a check of a fresh model needs no GPU]")]
Device = Annotated[Optional[str], typer.Option(help="torch device, e.g. cpu or cuda:1 (overrides --cuda)")]


def _tf32(cost: str = "") -> Any:
    return typer.Option("--tf32", help=f"On CUDA, allow TF32 arithmetic{cost} [default: full fp32]")


Tf32 = Annotated[bool, _tf32()]
EvalTf32 = Annotated[bool, _tf32(": faster on recent GPUs, at TF32's rounding")]
SampleTf32 = Annotated[bool, _tf32(": faster on recent GPUs, but the cached and naive samplers then round differently")]
