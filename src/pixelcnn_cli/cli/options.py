"""The options several commands repeat, declared once each as an ``Annotated`` type.

A command takes one as ``runs_dir: RunsDir = "runs"`` (the default stays in its signature; the
parameter's name gives the flag where no flag is named). Where commands really differ, each
variant is its own type, next to the shared one: every ``-m`` says what the checkpoint is for,
inspect-masks' ``--cuda`` defaults to the CPU, ``--tf32`` says what it costs where that differs.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

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

#: Where the commands that take ``-m`` look for the newest run
RunsDir = Annotated[str, typer.Option(help="Where to look for the newest run when -m is not given")]
#: The runs that ``pixelcnn runs`` lists and ``pixelcnn plot`` draws
RunsFolder = Annotated[str, typer.Option(help="Folder that holds one folder per run (train's --output-dir)")]

# -- the device: --cuda/--no-cuda, --device, --tf32 -------------------------------------------

#: Three-way: ``None`` (neither flag) lets the device be chosen automatically (common.device_from_flags)
Cuda = Annotated[Optional[bool], typer.Option("--cuda/--no-cuda", help="Use CUDA (default: when available)")]
#: inspect-masks' check is small: it runs on the CPU unless --cuda asks otherwise
CpuUnlessCuda = Annotated[bool, typer.Option(
    "--cuda/--no-cuda", show_default=False,
    help="Run the check on CUDA [default: on the CPU, where a check this small is quick]")]
Device = Annotated[Optional[str], typer.Option(help="torch device (overrides --cuda)")]


def _tf32(cost: str = "") -> Any:
    return typer.Option("--tf32", help=f"On CUDA, allow TF32 arithmetic{cost} [default: full fp32]")


Tf32 = Annotated[bool, _tf32()]
EvalTf32 = Annotated[bool, _tf32(": faster on recent GPUs, at TF32's rounding")]
SampleTf32 = Annotated[bool, _tf32(": faster on recent GPUs, but the cached and naive samplers then round differently")]
