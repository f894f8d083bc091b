"""Rich progress for training and sampling, drawn on stderr.

On a terminal the bars redraw in place; elsewhere (CI logs, pipes) training prints one plain
line per epoch and sampling one line when done.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from ..presets import gpu_sized_hint
from ..training import Callback, EpochMetrics, RunInfo, TrainResult


def _bar(console: Console, *extra) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class TrainingProgress(Callback):
    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.progress: Progress | None = None
        self.task = None
        self.epochs = 0
        self.unit = "bits/dim"

    def on_train_start(self, info: RunInfo, model: nn.Module) -> None:
        c = info.config
        self.unit = "bits/code" if info.spec.codes else "bits/dim"
        s = info.spec
        shape = (f"{s.height}x{s.width} maps of {c.color_levels} codes" if s.codes else
                 f"{s.channels}x{s.height}x{s.width}, {c.color_levels} levels")
        if s.condition_codes:
            shape += f", given {s.condition_height}x{s.condition_width} maps of {s.condition_codes} codes"
        self.console.print(
            f"run folder {info.run_dir} · {c.dataset} ({info.train_images} train / {info.test_images} test, "
            f"{shape}) · model {c.model} "
            f"({info.parameters:,} parameters) · device {info.device}"
        )
        hint = gpu_sized_hint(c, info.parameters, info.device)
        if hint:  # before the first step, which on the CPU may take minutes at this size
            self.console.print(hint, style="yellow", highlight=False)

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self.epochs = epochs
        if not self.live:
            return
        self.progress = _bar(self.console, TextColumn("{task.fields[stats]}"))
        self.progress.start()
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=batches, stats="")

    def on_batch_end(self, epoch, batch, batches, loss_bits, images_per_second, lr) -> None:
        if self.progress is not None:
            stats = f"loss {loss_bits:.4f} {self.unit} · {images_per_second:,.0f} img/s"
            self.progress.update(self.task, completed=batch, stats=stats)

    def on_eval(self, epoch, done, total) -> None:
        if self.progress is not None:
            if done == 1:
                self.eval_task = self.progress.add_task("  test", total=total, stats="")
            self.progress.update(self.eval_task, completed=done)

    def on_sampling(self, epoch, done, total) -> None:
        if self.progress is not None:
            if done == 1:
                self.sample_task = self.progress.add_task("  samples", total=total, stats="pixels x colours")
            if done == total or done % 16 == 0:
                self.progress.update(self.sample_task, completed=done)

    def on_epoch_end(self, m: EpochMetrics) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        best = " (best)" if m.best else ""
        self.console.print(
            f"epoch {m.epoch}/{self.epochs} · train {m.train_bits_per_dim:.4f} {self.unit} · "
            f"test {m.test_bits_per_dim:.4f} {self.unit}{best} · {m.images_per_second:,.0f} img/s · {m.seconds:.1f} s"
        )

    def on_train_end(self, result: TrainResult) -> None:
        if self.progress is not None:
            self.progress.stop()


class SamplingProgress:
    """``on_step(done, total)`` for samplers, whose steps are pixels x colours (each step draws
    one colour of one pixel in every image of the batch): a bar with the rate on a terminal,
    one summary line when done elsewhere."""

    def __init__(self, console: Console, description: str = "sampling", images: int = 1):
        self.console = console
        self.description = description
        self.images = images
        self.progress: Progress | None = None
        self.task = None
        self.started = time.perf_counter()
        self.last = 0.0
        self.done = 0
        self.total = 0

    def __enter__(self) -> "SamplingProgress":
        self.started = time.perf_counter()
        if self.console.is_terminal:
            self.progress = _bar(self.console, TextColumn("{task.fields[rate]}"))
            self.progress.start()
        return self

    def _rate(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-9)
        batch = f" x {self.images} images" if self.images > 1 else ""
        return f"{rate:,.0f} pixel-colours/s{batch}"

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task(f"{self.description} (pixels x colours)", total=total, rate="")
        now = time.perf_counter()
        if done == total or now - self.last > 0.1:
            self.last = now
            self.progress.update(self.task, completed=done, rate=self._rate(now))

    def __exit__(self, exc_type, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
        elif exc_type is None and self.total:
            now = time.perf_counter()
            self.console.print(
                f"{self.description}: {self.done:,}/{self.total:,} pixel-colours in {now - self.started:.1f} s "
                f"({self._rate(now)})", markup=False
            )


@contextlib.contextmanager
def count_progress(console: Console, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar of ``total`` items on a terminal (nothing elsewhere: the caller prints a summary);
    yields ``advance(n)``."""
    if not console.is_terminal:
        yield lambda n: None
        return
    progress = _bar(console)
    task = progress.add_task(description, total=total)
    with progress:
        yield lambda n: progress.advance(task, n)


class ResumeNotice(Callback):
    """Says where a resumed run carries on."""

    def __init__(self, console: Console):
        self.console = console

    def on_train_start(self, info: RunInfo, model: nn.Module) -> None:
        if info.resumed_from is not None:
            self.console.print(
                f"resuming {info.resumed_from}: epoch {info.start_epoch}/{info.config.epochs}, "
                f"batch {info.start_batch}/{info.batches_per_epoch}, step {info.start_step}"
            )
