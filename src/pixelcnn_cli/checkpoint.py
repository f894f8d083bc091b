"""Checkpoints as plain data: saved atomically, loaded with ``weights_only=True``.

A checkpoint carries everything needed to rebuild its model (the resolved config, the model
spec and the model plugin's options), so ``sample`` and ``eval`` never need architecture flags.
Its ``model_state`` holds the weights to sample and evaluate with (the moving average when
training used ``--ema``); ``train_state`` holds what ``pixelcnn train --resume`` needs to carry
on exactly (raw weights, optimiser, position, random states, metrics history; the learning
rate follows from the step).
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import CheckpointError

FORMAT = "pixelcnn-checkpoint"
FORMAT_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to a temporary file in the same folder, then rename it over ``path``.

    The rename is atomic, so a crash (even SIGKILL) leaves either the old file or the new one.
    The data is serialised in memory first, so a full disk shows up as a plain ``OSError`` with
    its errno and becomes a one-line :class:`CheckpointError`; the old file is kept.
    """
    path = Path(path)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__, **payload}
    buffer = io.BytesIO()
    torch.save(data, buffer)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)
    except OSError as error:
        if error.errno in _NO_SPACE:
            raise CheckpointError(
                f"no space left on the device to write {path}; free some space (the previous {path.name}, if any, is kept)"
            ) from None
        raise CheckpointError(f"cannot write checkpoint {path}: {error.strerror or error}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _unsupported_global(text: str) -> str | None:
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if match:
        return match.group(1)
    return "" if "Unsupported global" in text else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check one of our checkpoints; every failure is a one-line :class:`CheckpointError`.

    Nothing pickled in the file is ever run: ``weights_only=True`` refuses any class or function.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    if not head:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty")
    if head != _ZIP_MAGIC:
        raise CheckpointError(f"{path} is not a pixelcnn checkpoint (not a PyTorch checkpoint file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        name = _unsupported_global(str(error))
        if name is not None:
            what = f" ({name})" if name else ""
            raise CheckpointError(
                f"refusing to load {path}: it holds pickled Python code or objects{what}; nothing in it was run, "
                "and only plain-data pixelcnn checkpoints are loaded"
            ) from None
        raise CheckpointError(f"{path} is not a pixelcnn checkpoint (it holds data this loader does not accept)") from None
    except Exception:  # torch reports a damaged archive with several error types
        if zipfile.is_zipfile(path):  # a whole zip archive, but not torch's layout
            raise CheckpointError(f"{path} is not a pixelcnn checkpoint (a zip archive, not a PyTorch file)") from None
        raise CheckpointError(f"cannot read checkpoint {path}: the file is corrupt or truncated") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pixelcnn checkpoint (a PyTorch file of another program)")
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


def resume_target(target: str | Path) -> Path:
    """The checkpoint ``--resume`` means: a run folder's ``checkpoints/last.pt``, or a file."""
    target = Path(target)
    if target.is_dir():
        for candidate in (target / "checkpoints" / "last.pt", target / "last.pt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"nothing to resume in {target}: no {target / 'checkpoints' / 'last.pt'}")
    if not target.exists():
        raise CheckpointError(f"nothing to resume at {target}: no such run folder or checkpoint")
    return target


def run_dir_of(checkpoint_path: Path) -> Path:
    """The run folder a checkpoint belongs to (``RUN/checkpoints/NAME.pt``)."""
    checkpoint_path = Path(checkpoint_path)
    if checkpoint_path.parent.name != "checkpoints":
        raise CheckpointError(
            f"cannot resume {checkpoint_path}: it is not inside a run folder (RUN/checkpoints/*.pt); "
            "put it back in its run folder, or pass the run folder"
        )
    return checkpoint_path.parent.parent


def state_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's saved state: what one checkpoint of it costs on disk, roughly."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values() if isinstance(t, torch.Tensor))
