"""The data a trained model is evaluated, scored or completed on: what the user chose, the rest
from the checkpoint's training config (``eval``, ``score`` and ``sample --complete`` alike)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:  # no torch at import: the CLI checks --split before loading it
    from .config import TrainConfig
    from .contracts import ImageData

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
