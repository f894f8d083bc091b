"""``pixelcnn eval``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..datachoice import DataChoice
from . import common
from .common import device_from_flags, parse_key_values, user_errors
from .options import Cuda, DataDir, Dataset, DatasetOptions, Device, Download, EvalModelPath, EvalTf32, RunsDir, Split


@user_errors
def eval_command(
    model_path: EvalModelPath = None,
    dataset: Dataset = None,
    split: Split = "test",
    dataset_option: DatasetOptions = None,
    data_dir: DataDir = None,
    download: Download = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    runs_dir: RunsDir = "runs",
    cuda: Cuda = None,
    device: Device = None,
    tf32: EvalTf32 = False,
) -> None:
    """Negative log-likelihood of a trained model on a dataset split, in nats/image and bits/dim, and
    what the figure is: -log p(x|y) (class-conditional) or -log p(x), at how many colour levels."""
    choice = DataChoice(dataset, split, parse_key_values(dataset_option, "--dataset-option"), data_dir, download)
    # torch loads here, not at import: --help and completion stay quick
    from ..data.batches import make_loader
    from ..datachoice import check_fits, split_of
    from ..evaluation import evaluate, figure_of
    from .checkpoint_choice import load_model

    model, spec, config, path, torch_device = load_model(model_path, runs_dir, device_from_flags(device, cuda))
    name = choice.name(config)
    data = choice.load(config)
    check_fits(name, data, spec)
    loader = make_loader(split_of(data, split), batch_size, False)
    result = evaluate(model, loader, spec, torch_device, tf32=tf32)
    figure = figure_of(spec, conditional=bool(spec.num_classes))
    record = {"checkpoint": str(path), "dataset": name, "split": split, **result.as_dict(), **figure}
    if spec.codes:  # the same figures under the names codes go by
        record.update(nats_per_map=result.nats_per_image, bits_per_code=result.bits_per_dim)
    if as_json:
        typer.echo(json.dumps(record))
    else:
        item = figure["item"]
        common.out.print(
            f"{name} {split} ({result.images} {item}s): {result.nats_per_image:.2f} nats/{item} · "
            f"{result.bits_per_dim:.4f} {figure['unit']} · {figure['description']} ({path})", markup=False
        )
