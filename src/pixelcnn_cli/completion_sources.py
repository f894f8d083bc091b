"""What ``pixelcnn sample --complete`` completes: image files, or test images of a dataset."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import TrainConfig
from .contracts import ModelSpec
from .errors import DataError
from .images import fit_pictures, read_image_files
from .sampling import make_generator


@dataclass
class CompletionSources:
    pictures: torch.Tensor  # uint8, N x C x H x W in the model's channels and the asked size
    labels: torch.Tensor | None  # each picture's own class (dataset images), or None (files)
    description: str  # what they are, for the summary line


def file_sources(paths: list[str], spec: ModelSpec, height: int, width: int) -> CompletionSources:
    pictures = read_image_files(paths, spec.channels, height, width)
    return CompletionSources(pictures, None, f"{len(paths)} image file{'s' if len(paths) > 1 else ''}")


def dataset_sources(config: TrainConfig, data_dir: str | None, indices: list[int] | None, count: int,
                    seed: int | None, spec: ModelSpec, height: int, width: int) -> CompletionSources:
    """Test images of the dataset the model was trained on: ``indices``, or ``count`` random ones (by ``seed``)."""
    from .building import build_data

    data = build_data(config.dataset, data_dir or config.data_dir, config.download, config.dataset_options)
    if data.channels != spec.channels:
        raise DataError(f"{config.dataset} has {data.channels} channels but the model has {spec.channels}")
    total = len(data.test)
    if total == 0:
        raise DataError(f"{config.dataset} has no test images to complete")
    if indices is None:
        indices = torch.randperm(total, generator=make_generator(seed, 2))[: min(count, total)].tolist()
    bad = [i for i in indices if i >= total]
    if bad:
        raise DataError(f"--indices: {config.dataset} has {total} test images (0 to {total - 1}); got {bad[0]}")
    items = [data.test[i] for i in indices]
    pictures = torch.stack([torch.as_tensor(item[0]) for item in items])
    if pictures.dtype != torch.uint8:
        raise DataError(f"dataset items must be uint8 images, got {pictures.dtype}")
    labels = torch.tensor([int(item[1]) for item in items], dtype=torch.long)
    return CompletionSources(fit_pictures(pictures, spec.channels, height, width), labels,
                             f"{config.dataset} test images {', '.join(str(i) for i in indices)}")
