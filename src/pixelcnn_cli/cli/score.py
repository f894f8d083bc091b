"""``pixelcnn score``: the likelihood of each image, and how two sets of images compare."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..datachoice import DataChoice
from ..errors import ConfigError, DataError
from . import common
from .common import device_from_flags, parse_key_values, user_errors
from .options import (Cuda, DataDir, Dataset, DatasetOptions, Device, Download, Label, ModelPath, RunsDir, Split,
                      Tf32)

COLUMNS = ("image", "label", "nats", "bits_per_dim")
CODE_COLUMNS = ("map", "label", "nats", "bits_per_code")


@user_errors
def score(
    images: Annotated[Optional[list[str]], typer.Argument(metavar="[IMAGES]...", help="Picture files or folders to score [default: the checkpoint's dataset, --split]", show_default=False)] = None,
    model_path: ModelPath = None,
    dataset: Dataset = None,
    split: Split = "test",
    dataset_option: DatasetOptions = None,
    data_dir: DataDir = None,
    download: Download = None,
    label: Label = None,
    marginal: Annotated[bool, typer.Option("--marginal", help="Score log p(x) = log sum_y p(x|y)/K, a uniform prior over the K classes [default for pictures without a class]")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the rows to this .csv or .jsonl file [default: CSV on stdout]")] = None,
    compare: Annotated[Optional[str], typer.Option(help="Another set to tell apart by bits/dim: a folder or file, a split (train/test), or a dataset (NAME or NAME:SPLIT); prints the AUROC")] = None,
    histogram: Annotated[Optional[str], typer.Option(help="With --compare: PNG histogram of both sets [default: bits-histogram.png]")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable picture [default: report it and skip it]")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch")] = 64,
    runs_dir: RunsDir = "runs",
    cuda: Cuda = None,
    device: Device = None,
    tf32: Tf32 = False,
) -> None:
    """Score images by the model's likelihood: one row per image (nats and bits/dim), a summary,
    and with --compare the AUROC of telling two sets apart (Nalisnick et al. 2019)."""
    choice = DataChoice(dataset, split, parse_key_values(dataset_option, "--dataset-option"), data_dir, download)
    if images and (dataset or dataset_option):
        raise ConfigError("IMAGES and --dataset: score one or the other (compare them with --compare)")
    if histogram and not compare:
        raise ConfigError("--histogram: only with --compare")
    if output and Path(output).suffix.lower() not in (".csv", ".jsonl"):
        raise ConfigError(f"--output: must end in .csv or .jsonl; got {output}")
    # torch loads here, not at import: --help and completion stay quick
    from .. import scoring
    from ..images import check_png_target, check_target
    from .checkpoint_choice import load_model

    target = check_png_target(histogram or "bits-histogram.png") if compare else None
    if output:  # a folder that cannot take the table fails now, not after the scoring
        check_target(output, (".csv", ".jsonl"))
    model, spec, config, path, torch_device = load_model(model_path, runs_dir, device_from_flags(device, cuda))
    main = scoring.choose_source(images, choice, config, spec, batch_size, strict, _skipped)
    # the other set is opened (and checked) before minutes of scoring the first; its batches are read later
    other = scoring.compare_source(compare, images, choice, config, spec, batch_size, strict, _skipped) if compare else None
    rows, figure = _score_all(scoring, model, spec, main, torch_device, label, marginal, tf32)
    _check_scored(main, rows, figure)
    _write_rows(rows, output, figure)
    bits = [row.bits_per_dim for row in rows]
    summary_out = common.out if output else common.err
    summary_out.print(_summary_line(main.name, scoring.summary(bits), main.skipped, figure), markup=False)
    if other is not None:
        other_rows, other_figure = _score_all(scoring, model, spec, other, torch_device, label, marginal, tf32)
        _check_scored(other, other_rows, other_figure)
        other_bits = [row.bits_per_dim for row in other_rows]
        summary_out.print(_summary_line(other.name, scoring.summary(other_bits), other.skipped, other_figure),
                          markup=False)
        from ..plots import bits_histogram

        unit = figure["unit"]
        bits_histogram([(main.name, bits), (other.name, other_bits)], target, f"{unit} under {model_path or path}", unit)
        value = scoring.auroc(bits, other_bits)
        common.out.print(f"AUROC {value:.4f} of telling {other.name} from {main.name} by higher {unit} "
                         f"(0.5: chance; below 0.5: the model finds {other.name} more likely); histogram: {target}",
                         markup=False)


def _check_scored(source, rows: list, figure: dict) -> None:
    """Nothing scored is a failure (a script must not read an empty table as a result), named with the
    unreadable files passed over, each warned about above."""
    if not rows and source.skipped:
        raise DataError(f"{source.name}: no {figure['item']} could be read ({source.skipped} unreadable, each "
                        "named in a warning above)")
    if not rows:
        raise DataError(f"{source.name}: no {figure['item']}s to score")


def _skipped(error) -> None:
    common.err.print(f"warning: skipped {error.path}: {error.reason}", markup=False)


def _score_all(scoring, model, spec, source, device, label, marginal, tf32) -> tuple[list, dict]:
    """-> (the rows of ``source``, what their figure is: :func:`.evaluation.figure_of`)."""
    from ..evaluation import figure_of
    from .progress import count_progress

    mode = scoring.label_mode(spec, label, marginal, source.has_labels)
    if mode == "marginal" and not marginal:
        common.err.print(f"notice: {source.name}: no classes given; scoring log p(x) summed over the "
                         f"{spec.num_classes} classes with a uniform prior (--label N to pick one)", markup=False)
    rows = []
    with count_progress(common.err, f"scoring {source.name}", source.total) as advance:
        for row in scoring.score(model, spec, source.batches, device, mode, label, tf32):
            rows.append(row)
            advance(1)
    return rows, figure_of(spec, conditional=mode in ("own", "given"))


def _write_rows(rows, output: str | None, figure: dict) -> None:
    """CSV on stdout, or a .csv / .jsonl file (written whole, so a failed write leaves no half file);
    each JSON row also says what its figure is (``likelihood``, ``conditional``, ``color_levels``)."""
    names = dict(zip(COLUMNS, CODE_COLUMNS if figure["codes"] else COLUMNS))  # codes: one row per map, in bits/code
    if output is None or output.lower().endswith(".csv"):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names.values())
        writer.writerows(_cells(row) for row in rows)
        text = buffer.getvalue()
    else:
        said = {key: figure[key] for key in ("likelihood", "conditional", "color_levels", "codes")}
        text = "".join(json.dumps({**{names[k]: v for k, v in row.as_dict().items()}, **said}) + "\n" for row in rows)
    if output is None:
        sys.stdout.write(text)
        return
    target = Path(output)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"--output: cannot write {target}: {error.strerror or error}") from None
    common.err.print(f"wrote {len(rows)} row{'s' if len(rows) != 1 else ''} to {target}", markup=False)


def _cells(row) -> list:
    return [row.image, "" if row.label is None else row.label, f"{row.nats:.4f}", f"{row.bits_per_dim:.6f}"]


def _summary_line(name: str, stats: dict, skipped: int, figure: dict) -> str:
    skip = f" ({skipped} unreadable skipped)" if skipped else ""
    items = figure["item"] + ("s" if stats["count"] != 1 else "")
    return (f"{name}: {stats['count']} {items}{skip} · {figure['description']} · {figure['unit']} mean {stats['mean']:.4f} (sd {stats['std']:.4f}) · "
            f"min {stats['min']:.4f} · 5% {stats['q05']:.4f} · 25% {stats['q25']:.4f} · median {stats['q50']:.4f} · "
            f"75% {stats['q75']:.4f} · 95% {stats['q95']:.4f} · max {stats['max']:.4f}")
