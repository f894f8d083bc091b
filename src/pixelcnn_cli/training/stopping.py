"""Stopping on signals: a polite first stop that saves, a second that stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from .. import distributed
from ..distributed import DistContext
from ..errors import PixelCNNError


class TrainingInterrupted(PixelCNNError):
    """Training stopped on a signal (or :meth:`StopRequest.request`).

    ``checkpoint`` is the file to resume from (``None`` if there is none), ``saved`` whether it
    was written at the moment of the stop (``False`` after a second signal: stopped at once).
    The exit code is the shell's: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, *, checkpoint: Path | None, run_dir: Path | None, signum: int,
                 saved: bool, epoch: int, step: int):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.run_dir = run_dir
        self.signum = signum
        self.saved = saved
        self.epoch = epoch
        self.step = step
        self.exit_code = 128 + int(signum)


class StopRequest:
    """A polite request to stop training, set by a signal or by :meth:`request`."""

    DEBOUNCE_S = 1.0

    def __init__(self) -> None:
        self.signum: int | None = None
        self.forced: int | None = None
        self._first_at = 0.0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = int(signum)
            self._first_at = time.monotonic()

    def handle(self, signum: int, frame: Any = None) -> None:
        """Signal handler: the first signal asks to stop; a later one stops at once."""
        if self.signum is None:
            self.request(signum)
            return
        if time.monotonic() - self._first_at < self.DEBOUNCE_S:
            return  # the same stop delivered twice (the terminal and a launcher both send it)
        self.forced = int(signum)
        raise KeyboardInterrupt

    def agreed(self, ctx: DistContext, device: torch.device) -> bool:
        """Whether to stop, as all ranks see it: a stop asked of any rank (by its signal) stops them all."""
        if not ctx.enabled:
            return self.requested
        (shared,) = distributed.max_all(ctx, [self.signum or 0], device)
        if shared and not self.requested:
            self.request(int(shared))
        return bool(shared)

    def interrupted(self, *, saved: bool, checkpoint: Path | None, run_dir: Path | None, epoch: int,
                    step: int) -> TrainingInterrupted:
        """The stop as an error: saved at ``checkpoint`` at this step, or stopped at once (a second
        signal) with the last checkpoint kept."""
        if saved:
            signum = self.signum or signal.SIGINT
            message = f"interrupted by {signal.Signals(signum).name} at epoch {epoch}, step {step}; saved {checkpoint}"
        else:
            signum = self.forced or self.signum or signal.SIGINT
            kept = f"the last checkpoint is kept: {checkpoint}" if checkpoint else "no checkpoint was saved"
            again = " again" if self.forced is not None else ""  # else a KeyboardInterrupt nobody caught as a signal
            message = f"interrupted{again} by {signal.Signals(signum).name}: stopped at once without saving; {kept}"
        return TrainingInterrupted(message, checkpoint=checkpoint, run_dir=run_dir, signum=signum, saved=saved,
                                   epoch=epoch, step=step)

    @contextlib.contextmanager
    def catch_signals(self) -> Iterator["StopRequest"]:
        """Handle SIGINT and SIGTERM while inside (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self.handle)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
