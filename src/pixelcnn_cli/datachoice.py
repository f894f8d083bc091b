"""The data a trained model is evaluated, scored or completed on: what the user chose, the rest
from the checkpoint's training config (``eval``, ``score`` and ``sample --complete`` alike)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DataError

if TYPE_CHECKING:  # no torch at import: the CLI checks --split before loading it
    from .config import TrainConfig
    from .contracts import ImageData, ModelSpec

SPLITS = ("test", "train")


@dataclass
class DataChoice:
    """``None`` fields fall back on the training config: its dataset, folder and download setting,
    and its dataset options when the dataset is the training one (none for another dataset)."""

    dataset: str | None = None
    split: str = "test"
    options: dict[str, Any] | None = None
    data_dir: str | None = None
    download: bool | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"--split: must be {' or '.join(SPLITS)}; got {self.split!r}")

    def name(self, config: TrainConfig) -> str:
        return self.dataset or config.dataset

    def load(self, config: TrainConfig, name: str | None = None) -> ImageData:
        """Dataset ``name`` (default: the chosen one); the chosen options apply to the chosen dataset only."""
        from .building import build_data

        name = name or self.name(config)
        if self.options is not None and name == self.name(config):
            options = self.options
        else:
            options = config.dataset_options if name == config.dataset else {}
        download = config.download if self.download is None else self.download
        return build_data(name, self.data_dir or config.data_dir, download, options)


def split_of(data: ImageData, split: str):
    """The ``test`` or ``train`` part of ``data``."""
    return data.test if split == "test" else data.train


def check_fits(name: str, data: ImageData, spec: ModelSpec) -> None:
    """One-line errors for data a trained model cannot read: pictures for a prior over codes (or
    codes for a picture model), other channels, more classes or codes than it knows, and condition
    maps it needs and lacks, has and does not read, or reads at another size."""
    kind = f"a prior over {spec.color_levels} codes" if spec.codes else "a model of pictures"
    if spec.codes != bool(data.codes):
        raise DataError(f"{name} holds {'code maps' if data.codes else 'pictures'}, and the model is {kind}")
    if data.channels != spec.channels:
        raise DataError(f"{name} has {data.channels} channel{'s' if data.channels > 1 else ''} but the model was "
                        f"trained on {spec.channels}")
    if spec.num_classes and data.num_classes > spec.num_classes:
        raise DataError(f"{name} has {data.num_classes} classes but the model knows {spec.num_classes}")
    if data.codes > spec.color_levels:
        raise DataError(f"{name} has {data.codes} codes but the prior knows {spec.color_levels}")
    _check_condition_fits(name, data, spec)


def _check_condition_fits(name: str, data: ImageData, spec: ModelSpec) -> None:
    wanted = f"{spec.condition_height}x{spec.condition_width} maps of {spec.condition_codes} codes"
    if spec.condition_codes and not data.condition_codes:
        raise DataError(f"{name} has no condition maps, and the prior reads {wanted} (an .npz's 'condition', or "
                        "--dataset-option condition=FILE.npy)")
    if data.condition_codes and not spec.condition_codes:
        raise DataError(f"{name} has condition maps, which this prior does not read: give it maps without them")
    if not spec.condition_codes:
        return
    if (data.condition_height, data.condition_width) != (spec.condition_height, spec.condition_width):
        raise DataError(f"{name}'s condition maps are {data.condition_height}x{data.condition_width}; the prior reads {wanted}")
    if data.condition_codes > spec.condition_codes:
        raise DataError(f"{name}'s condition maps have {data.condition_codes} codes; the prior reads {wanted}")
    if (data.height, data.width) != (spec.height, spec.width):
        raise DataError(f"{name}'s maps are {data.height}x{data.width}; the prior, conditioned on maps laid over its "
                        f"training size, takes {spec.height}x{spec.width}")
