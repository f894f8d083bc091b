"""The run's training curves, redrawn into ``curves.png`` in the run folder at each epoch end."""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import nn

from ..runs import read_metrics
from .callbacks import Callback, EpochMetrics, RunInfo


class CurvesFigure(Callback):
    """Rank 0 draws ``curves.png`` (train and test bits/dim, learning rate) after every epoch, beside
    the sample grids. A figure that cannot be drawn is a warning, never the end of training."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.unit = "bits/dim"
        self.failed = False

    def on_train_start(self, info: RunInfo, model: nn.Module) -> None:
        self.run_dir = info.run_dir
        self.unit = "bits/code" if info.spec.codes else "bits/dim"

    def on_epoch_end(self, metrics: EpochMetrics) -> None:
        if self.run_dir is None or self.failed:
            return
        from ..plots import training_curves

        try:
            training_curves([(self.run_dir.name, read_metrics(self.run_dir))], self.run_dir / "curves.png", self.unit)
        except Exception as error:  # matplotlib or the disk: the run matters more than its picture
            self.failed = True
            warnings.warn(f"could not draw {self.run_dir / 'curves.png'} ({error}); training goes on", stacklevel=2)
