"""``pixelcnn eval``."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from .. import registry
from ..errors import DataError
from . import common
from .common import completes, device_from_flags, user_errors
from .options import Cuda, Device, EvalModelPath, EvalTf32, RunsDir


@user_errors
def eval_command(
    model_path: EvalModelPath = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset to evaluate on [default: the one it was trained on]",
                                                   autocompletion=completes(registry.datasets.names))] = None,
    data_dir: Annotated[Optional[str], typer.Option(help="Dataset folder [default: the training one]")] = None,
    download: Annotated[Optional[bool], typer.Option("--download/--no-download", help="Download missing dataset files [default: as in training]")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    runs_dir: RunsDir = "runs",
    cuda: Cuda = None,
    device: Device = None,
    tf32: EvalTf32 = False,
) -> None:
    """Test negative log-likelihood of a trained model, in nats/image and bits/dim."""
    # torch loads here, not at import: --help and completion stay quick
    from ..building import build_data
    from ..data.batches import make_loader
    from ..evaluation import evaluate
    from .checkpoint_choice import load_model

    model, spec, config, path, torch_device = load_model(model_path, runs_dir, device_from_flags(device, cuda))
    name = dataset or config.dataset
    options = config.dataset_options if name == config.dataset else {}
    data = build_data(name, data_dir or config.data_dir, config.download if download is None else download, options)
    if data.channels != spec.channels:
        raise DataError(f"{name} has {data.channels} channels but the model was trained on {spec.channels}")
    if spec.num_classes and data.num_classes > spec.num_classes:
        raise DataError(f"{name} has {data.num_classes} classes but the model knows {spec.num_classes}")
    loader = make_loader(data.test, batch_size, False)
    result = evaluate(model, loader, spec, torch_device, tf32=tf32)
    record = {"checkpoint": str(path), "dataset": name, "split": "test", **result.as_dict()}
    if as_json:
        typer.echo(json.dumps(record))
    else:
        common.out.print(
            f"{name} test ({result.images} images): {result.nats_per_image:.2f} nats/image · "
            f"{result.bits_per_dim:.4f} bits/dim ({path})"
        )
