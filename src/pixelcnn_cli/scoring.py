"""The likelihood of each image: ``-log p(x)`` in nats and bits/dim, one row per image.

Images come in batches from a dataset split or from picture files (read by
:func:`.images.read_picture`, a batch at a time, so memory stays flat on large folders). For a
class-conditional model each image is scored under its own class (dataset images), a given
class, or the marginal over classes with a uniform prior,
``log p(x) = log sum_y p(x|y) p(y)`` with ``p(y) = 1/K``.

:func:`auroc` says how well bits/dim tells two sets apart (the out-of-distribution experiment of
Nalisnick et al. 2019).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

import torch
from torch import nn

from .contracts import ModelSpec, split_context, with_classes
from .datachoice import SPLITS, DataChoice, check_fits, split_of
from .errors import ConfigError, DataError
from .evaluation import nll_terms
from .images import PICTURE_EXTENSIONS, PictureError, read_picture

LabelMode = Literal["own", "given", "marginal", "none"]
Batch = tuple[torch.Tensor, "torch.Tensor | None", list[str]]  # uint8 images, their classes (or None), their names


@dataclass
class ScoredImage:
    image: str  # a file's path, or split[index] for a dataset image
    label: int | None  # the class it was scored under (None: unconditional or marginal)
    nats: float
    bits_per_dim: float

    def as_dict(self) -> dict:
        return asdict(self)


def label_mode(spec: ModelSpec, label: int | None, marginal: bool, has_labels: bool) -> LabelMode:
    """How to condition: checks the flags against the model (one-line errors). ``label`` -1 is
    ``None`` (no class fixed), as on ``pixelcnn sample``. A prior conditioned on maps always reads
    each map's own condition; the flags choose only its class."""
    if label == -1:
        label = None
    if label is not None and marginal:
        raise ConfigError("--label and --marginal: give one or the other")
    if not spec.num_classes:
        if label is not None or marginal:
            why = "the prior has no classes (only its condition maps)" if spec.condition_codes else \
                "the model is unconditional (no classes)"
            raise ConfigError(f"{'--label' if label is not None else '--marginal'}: {why}")
        return "none"
    if label is not None:
        if not 0 <= label < spec.num_classes:
            raise ConfigError(f"--label: the model knows classes 0 to {spec.num_classes - 1}; got {label}")
        return "given"
    if marginal or not has_labels:
        return "marginal"
    return "own"


@torch.no_grad()
def image_nats(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, spec: ModelSpec,
               tf32: bool = False) -> torch.Tensor:
    """``-log p(x | label)`` in nats of each ``uint8`` image (or code map), float64 ``B``."""
    return nll_terms(model, images, labels, spec, tf32).double().flatten(1).sum(1)


@torch.no_grad()
def marginal_nats(model: nn.Module, images: torch.Tensor, spec: ModelSpec, tf32: bool = False,
                  contexts: torch.Tensor | None = None) -> torch.Tensor:
    """``-log sum_y p(x|y) / K`` in nats, float64 ``B``: one pass per class (a prior conditioned on
    maps keeps each map's condition, ``contexts``, under every class)."""
    per_class = torch.stack([
        image_nats(model, images, _under_class(contexts, y, images.shape[0], images.device), spec, tf32)
        for y in range(spec.num_classes)
    ])
    return -(torch.logsumexp(-per_class, dim=0) - math.log(spec.num_classes))


def _under_class(contexts: torch.Tensor | None, y: int, count: int, device: torch.device) -> torch.Tensor:
    """Class ``y`` for ``count`` images, as their labels: with ``contexts``, each keeps its map."""
    classes = torch.full((count,), y, dtype=torch.long, device=device)
    return classes if contexts is None else with_classes(contexts.to(device), classes)


def score(model: nn.Module, spec: ModelSpec, batches: Iterable[Batch], device: torch.device, mode: LabelMode,
          label: int | None = None, tf32: bool = False) -> Iterator[ScoredImage]:
    """Score every image of ``batches``; yields rows in order."""
    was_training = model.training
    model.eval()
    try:
        for images, labels, names in batches:
            images = images.to(device)
            if spec.condition_codes and labels is None:
                raise DataError("these maps have no condition maps, which the prior needs")
            contexts = labels if spec.condition_codes else None  # what every mode keeps: the condition maps
            if mode == "marginal":
                nats = marginal_nats(model, images, spec, tf32, contexts)
                used = [None] * len(names)
            else:
                if mode == "given":
                    labels = _under_class(contexts, int(label), images.shape[0], device)
                elif mode == "none":
                    labels = contexts
                elif labels is None:
                    raise DataError("these images have no classes: score them with --label N or --marginal")
                labels = labels.to(device) if labels is not None else None
                nats = image_nats(model, images, labels, spec, tf32)
                classes = split_context(labels, spec)[0]
                used = classes.tolist() if classes is not None else [None] * len(names)
            dims = images[0].numel()
            for name, value, y in zip(names, nats.tolist(), used):
                yield ScoredImage(name, y, value, value / dims / math.log(2))
    finally:
        model.train(was_training)


# -- where images come from -------------------------------------------------------------------------

def picture_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the pictures inside folders (recursively, sorted; hidden ones skipped)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in PICTURE_EXTENSIONS
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"no such file or folder: {path}")
    if not found:
        raise DataError(f"no pictures ({', '.join(PICTURE_EXTENSIONS)}) in {', '.join(str(p) for p in paths)}")
    return found


def paths_name(paths: list[str]) -> str:
    """A set of picture paths as summaries and figures name it: as typed, or (a shell's glob of
    hundreds) its first two and how many more, so a line and a legend stay readable."""
    return ", ".join(paths) if len(paths) <= 3 else f"{paths[0]}, {paths[1]} and {len(paths) - 2} more"


def file_batches(files: list[Path], spec: ModelSpec, batch_size: int, strict: bool,
                 on_skip: Callable[[PictureError], None]) -> Iterator[Batch]:
    """Picture files read a batch at a time; an unreadable one stops the run (``strict``) or is skipped."""
    for start in range(0, len(files), batch_size):
        pictures, names = [], []
        for path in files[start:start + batch_size]:
            try:
                pictures.append(read_picture(path, spec.channels, spec.height, spec.width))
                names.append(str(path))
            except PictureError as error:
                if strict:
                    raise DataError(f"{error} (--strict)") from None
                on_skip(error)
        if pictures:
            yield torch.stack(pictures), None, names


def dataset_batches(dataset, split: str, batch_size: int, labelled: bool) -> Iterator[Batch]:
    """A dataset split in order, named ``split[index]``."""
    from .data.batches import make_loader

    start = 0
    for images, labels in make_loader(dataset, batch_size, False):
        names = [f"{split}[{i}]" for i in range(start, start + images.shape[0])]
        start += images.shape[0]
        yield images, (labels.long() if labelled else None), names


# -- choosing the images ------------------------------------------------------------------------------

@dataclass
class ImageSource:
    """A set of images to score: its name, its batches (read lazily), how many, and whether they carry classes."""

    name: str
    batches: Iterable[Batch]
    total: int
    has_labels: bool
    skipped: int = 0  # unreadable pictures passed over so far


def choose_source(images: list[str] | None, choice: DataChoice, config, spec: ModelSpec, batch_size: int,
                  strict: bool, on_skip: Callable[[PictureError], None]) -> ImageSource:
    """Picture files and folders, or else the chosen dataset split (the checkpoint's dataset by default)."""
    if not images:
        return dataset_source(choice, config, spec, batch_size)
    if spec.codes:
        raise ConfigError(f"{', '.join(images)}: the model is a prior over {spec.color_levels} codes, not pictures; score "
                          "code maps of a dataset (--dataset codes --dataset-option path=FILE)")
    files = picture_files(images)
    source = ImageSource(paths_name(images), (), len(files), False)

    def skipped(error: PictureError) -> None:
        source.skipped += 1
        on_skip(error)

    source.batches = file_batches(files, spec, batch_size, strict, skipped)
    return source


def dataset_source(choice: DataChoice, config, spec: ModelSpec, batch_size: int, name: str | None = None,
                   split: str | None = None) -> ImageSource:
    """A split of a dataset plugin's data: the chosen one, or ``name`` / ``split`` (see :class:`.DataChoice`)."""
    name = name or choice.name(config)
    split = split or choice.split
    data = choice.load(config, name)
    check_fits(name, data, spec)
    if (data.channels, data.height, data.width) != (spec.channels, spec.height, spec.width):
        raise DataError(f"{name} images are {data.channels}x{data.height}x{data.width}; the model takes "
                        f"{spec.channels}x{spec.height}x{spec.width} (score picture files to have them fitted)")
    part = split_of(data, split)
    labelled = bool(data.num_classes) and bool(spec.num_classes) and data.num_classes <= spec.num_classes
    # a prior conditioned on maps is given each map's context (its class, if any, and its condition) always
    batches = dataset_batches(part, split, batch_size, labelled or bool(spec.condition_codes))
    return ImageSource(f"{name} {split}", batches, len(part), labelled)


def compare_source(compare: str, images: list[str] | None, choice: DataChoice, config, spec: ModelSpec,
                   batch_size: int, strict: bool, on_skip: Callable[[PictureError], None]) -> ImageSource:
    """``--compare``: a file or folder, the other split (``train``/``test``), or a dataset (``NAME[:SPLIT]``)."""
    from . import registry

    if Path(compare).expanduser().exists():
        return choose_source([compare], choice, config, spec, batch_size, strict, on_skip)
    name, _, split = compare.partition(":")
    if name in SPLITS and not split:
        if images:
            raise ConfigError(f"--compare {compare}: a split needs a dataset to score, not picture files")
        return dataset_source(choice, config, spec, batch_size, split=name)
    names = registry.datasets.names()
    if name not in names:
        raise ConfigError(f"--compare: {compare!r} is not a file or folder, a split (test, train), "
                          f"or a dataset ({', '.join(names)})")
    if (split or "test") not in SPLITS:
        raise ConfigError(f"--compare {compare}: the split must be test or train")
    return dataset_source(choice, config, spec, batch_size, name=name, split=split or "test")


# -- numbers about the rows ---------------------------------------------------------------------------

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def summary(bits: list[float]) -> dict[str, float | int]:
    """Count, mean, standard deviation, min, quantiles and max of bits/dim."""
    if not bits:
        return {"count": 0}
    values = torch.tensor(bits, dtype=torch.float64)
    result: dict[str, float | int] = {"count": len(bits), "mean": float(values.mean()),
                                      "std": float(values.std()) if len(bits) > 1 else 0.0, "min": float(values.min())}
    for q in QUANTILES:
        result[f"q{round(q * 100):02d}"] = float(torch.quantile(values, q))
    result["max"] = float(values.max())
    return result


def auroc(inside: list[float], other: list[float]) -> float:
    """Area under the ROC curve of calling an image "other" when its bits/dim is higher: the chance
    that a random ``other`` image scores above a random ``inside`` one (ties count half). 0.5 is
    chance; below 0.5 the model finds the other images *more* likely (Nalisnick et al. 2019)."""
    if not inside or not other:
        raise ValueError("both sets need at least one image")
    values = torch.tensor(inside + other, dtype=torch.float64)
    order = values.argsort()
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=torch.float64)
    _, group, counts = values.unique(return_inverse=True, return_counts=True)  # tied values share their mean rank
    ranks = (torch.zeros(len(counts), dtype=torch.float64).scatter_add_(0, group, ranks) / counts)[group]
    rank_sum = float(ranks[len(inside):].sum())
    n_other, n_inside = len(other), len(inside)
    return (rank_sum - n_other * (n_other + 1) / 2) / (n_other * n_inside)
