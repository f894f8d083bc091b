"""What ``pixelcnn sample --complete`` completes: image files, or test images of a dataset; and
the batch the sampler completes from them (each source repeated, its class, the uniforms)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import TrainConfig
from .contracts import ModelSpec, pack_context, split_context
from .datachoice import DataChoice, check_fits, split_of
from .data.quantize import data_levels
from .errors import ConfigError, DataError
from .images import fit_pictures, read_image_files
from .sampling import draw_uniforms, make_generator, resolve_labels


@dataclass
class CompletionSources:
    pictures: torch.Tensor  # uint8 (codes: integers), N x C x H x W in the model's channels and the asked size
    labels: torch.Tensor | None  # each picture's own class (dataset images), or None (files)
    description: str  # what they are, for the summary line


def file_sources(paths: list[str], spec: ModelSpec, height: int, width: int) -> CompletionSources:
    if spec.codes:
        raise ConfigError("--images: this model's data are code maps, not pictures; complete maps of a dataset "
                          "(--dataset codes --dataset-option path=FILE) instead")
    pictures = read_image_files(paths, spec.channels, height, width)
    return CompletionSources(pictures, None, f"{len(paths)} image file{'s' if len(paths) > 1 else ''}")


def dataset_sources(config: TrainConfig, choice: DataChoice, indices: list[int] | None, count: int,
                    seed: int | None, spec: ModelSpec, height: int, width: int) -> CompletionSources:
    """Images of the chosen dataset split (default: the training dataset's test images): ``indices``,
    or ``count`` random ones (by ``seed``)."""
    name, split = choice.name(config), choice.split
    data = choice.load(config)
    check_fits(name, data, spec)
    part = split_of(data, split)
    total = len(part)
    if total == 0:
        raise DataError(f"{name} has no {split} images to complete")
    if indices is None:
        indices = torch.randperm(total, generator=make_generator(seed, 2))[: min(count, total)].tolist()
    bad = [i for i in indices if i >= total]
    if bad:
        raise DataError(f"--indices: {name} has {total} {split} images (0 to {total - 1}); got {bad[0]}")
    items = [part[i] for i in indices]
    pictures = torch.stack([torch.as_tensor(item[0]) for item in items])
    labels = _item_labels([item[1] for item in items])
    what = f"{name} {split} images {', '.join(str(i) for i in indices)}"
    if spec.codes:  # code maps are completed as they are: no colour conversion, no resizing
        if tuple(pictures.shape[-2:]) != (height, width):
            raise DataError(f"{name}'s code maps are {pictures.shape[-2]}x{pictures.shape[-1]}; the model's are {height}x{width}")
        return CompletionSources(pictures, labels, what)
    if pictures.dtype != torch.uint8:
        raise DataError(f"dataset items must be uint8 images, got {pictures.dtype}")
    return CompletionSources(fit_pictures(pictures, spec.channels, height, width), labels, what)


@dataclass
class CompletionBatch:
    keep_rows: int  # rows kept from the top of every image
    originals: torch.Tensor  # levels, S x C x H x W: one per source
    known: torch.Tensor  # levels, (S * n) x C x H x W: each source ``n`` times in a row
    labels: torch.Tensor | None  # (S * n,) the class each completion is drawn under (a context with a condition map)
    uniforms: torch.Tensor  # the sampler's randomness, shaped like ``known``


def completion_batch(chosen: CompletionSources, spec: ModelSpec, per_source: int, keep_rows: int | None,
                     label: int, seed: int | None) -> CompletionBatch:
    """``per_source`` completions of each of ``chosen``, keeping ``keep_rows`` rows (default: half).

    ``label`` -1 completes each dataset image under its own class (random ones for files or an
    unconditional model); any other class completes every image under that one.
    """
    height, width = chosen.pictures.shape[-2:]
    keep = height // 2 if keep_rows is None else keep_rows
    if not 0 <= keep < height:
        raise ConfigError(f"--keep-rows: must be between 0 and {height - 1} for {height}-row images; got {keep}")
    labels = _source_labels(chosen, spec, label, seed)
    originals = data_levels(chosen.pictures, spec.color_levels, spec.codes)
    count = originals.shape[0] * per_source
    return CompletionBatch(keep, originals, originals.repeat_interleave(per_source, dim=0),
                           labels.repeat_interleave(per_source, dim=0) if labels is not None else None,
                           draw_uniforms(count, spec.channels, height, width, seed))


def _item_labels(labels: list) -> torch.Tensor:
    """Dataset items' labels as one tensor: classes (``B``), or packed contexts (``B x (1 + h*w)``)."""
    if labels and isinstance(labels[0], torch.Tensor) and labels[0].ndim == 1:
        return torch.stack(labels).long()
    return torch.tensor([int(y) for y in labels], dtype=torch.long)


def _source_labels(chosen: CompletionSources, spec: ModelSpec, label: int, seed: int | None) -> torch.Tensor | None:
    """One class per source: ``label`` (-1: random, by ``seed``), or each dataset image's own; a
    prior conditioned on maps completes each map under its own condition map."""
    if spec.condition_codes and chosen.labels is None:
        raise DataError("the prior is conditioned on maps, and these sources have none")
    classes, maps = split_context(chosen.labels, spec) if spec.condition_codes else (chosen.labels, None)
    if label >= 0 or not spec.num_classes or classes is None:
        classes = resolve_labels(label, chosen.pictures.shape[0], spec, seed)
    elif int(classes.max()) >= spec.num_classes:
        raise DataError(f"a test image's class is beyond the {spec.num_classes} classes the model knows")
    return pack_context(classes, maps)
