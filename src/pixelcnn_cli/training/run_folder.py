"""Run folders: made once, never replaced unless asked, checked for space, written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import TrainingError
from ..runs import mark_running


def probe_writable(run_dir: Path) -> None:
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise TrainingError(f"cannot write the run folder {run_dir}: {error.strerror or error}") from None


def prepare_run_dir(config: TrainConfig) -> Path:
    """Create the run folder up front; never replace an existing one unless ``overwrite``."""
    root = Path(config.output_dir)
    if config.run_name:
        run_dir = root / config.run_name
        if run_dir.exists():
            if not config.overwrite:
                raise TrainingError(f"run folder {run_dir} already exists; pass --overwrite to replace it or choose another --run-name")
            try:
                shutil.rmtree(run_dir)
            except OSError as error:
                raise TrainingError(f"cannot replace the run folder {run_dir}: {error.strerror or error}") from None
    else:
        base = f"{config.dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        run_dir, n = root / base, 1
        while run_dir.exists():
            n += 1
            run_dir = root / f"{base}-{n}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as error:
        raise TrainingError(f"cannot write the run folder {run_dir}: {error.strerror or error}") from None
    probe_writable(run_dir)
    return run_dir


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse to start when the disk cannot hold the checkpoints the run will write."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise TrainingError(
            f"not enough disk space in {folder}: {free / 2**20:.1f} MiB free, the checkpoints need about "
            f"{needed / 2**20:.1f} MiB; free some space or choose another --output-dir"
        )


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def writing(what: Path):
    """Turn a failed write (full disk, vanished folder) into a one-line error."""
    try:
        yield
    except OSError as error:
        raise TrainingError(f"cannot write {what}: {error.strerror or error}") from None


def open_run_dir(config: TrainConfig, existing: Path | None, record: dict[str, Any], checkpoint_bytes: int) -> Path:
    """A new run folder (``existing`` None) or the one being resumed, checked for room and with
    ``config.json`` (``record``) written; ``checkpoint_bytes`` is the size of one checkpoint."""
    if existing is None:
        run_dir = prepare_run_dir(config)
        try:
            check_free_space(run_dir, checkpoint_bytes * 3)  # last.pt, best.pt and one being written
        except TrainingError:
            shutil.rmtree(run_dir, ignore_errors=True)  # leave no empty run folder behind
            raise
    else:
        run_dir = existing
        probe_writable(run_dir)
        for stale in (run_dir / "checkpoints").glob(".*.tmp"):  # left by a process killed while saving
            stale.unlink(missing_ok=True)
        check_free_space(run_dir, checkpoint_bytes)
    with writing(run_dir / "config.json"):
        write_text_atomic(run_dir / "config.json", json.dumps(record, indent=2))
        mark_running(run_dir)  # `pixelcnn runs` tells a live run from a stopped one; train() clears it
    return run_dir


def state_bytes(module: nn.Module) -> int:
    """Bytes of a module's saved state: what one checkpoint of it costs on disk, roughly."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values() if isinstance(t, torch.Tensor))
