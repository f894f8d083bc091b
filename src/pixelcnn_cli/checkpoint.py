"""Checkpoints as plain data: saved atomically, loaded with ``weights_only=True``.

A checkpoint carries everything needed to rebuild its model (the resolved config, the model
spec and the model plugin's options), so ``sample`` and ``eval`` never need architecture flags.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import CheckpointError

FORMAT = "pixelcnn-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to a temporary file in the same folder, then rename it over ``path``.

    The rename is atomic, so a crash (even SIGKILL) leaves either the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check one of our checkpoints; every failure is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"refusing to load {path}: it holds pickled Python objects (code could run); "
                "only plain-data pixelcnn checkpoints are loaded"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: the file is corrupt or not a checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is corrupt or truncated") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pixelcnn checkpoint")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}, newer than this pixelcnn reads ({FORMAT_VERSION}); upgrade pixelcnn-cli"
        )
    for key in ("config", "spec", "model_state"):
        if key not in data:
            raise CheckpointError(f"{path} is not a complete pixelcnn checkpoint (no {key!r})")
    return data


def find_latest_checkpoint(runs_dir: str | Path) -> Path:
    """The newest run's best checkpoint under ``runs_dir`` (by modification time)."""
    runs_dir = Path(runs_dir)
    candidates = list(runs_dir.glob("*/checkpoints/best.pt")) if runs_dir.is_dir() else []
    if not candidates:
        raise CheckpointError(
            f"no checkpoint given and none found under {runs_dir}/*/checkpoints/best.pt; "
            "train one with `pixelcnn train` or pass -m PATH"
        )
    return max(candidates, key=lambda p: p.stat().st_mtime)
