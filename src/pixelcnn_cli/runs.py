"""Run folders: made, written and listed.

Training makes a run folder once (never replacing one unless asked), checks it is writable and
has room for the checkpoints, writes into it atomically, and keeps a marker (``.running``: its
pid and host) while it runs. ``pixelcnn runs`` reads what each folder is, how far it got and
whether it is still going from the files every run folder has (``config.json``,
``metrics.jsonl``) and that marker, so listing runs needs no checkpoint loading and no torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .errors import ConfigError, TrainingError

MARKER = ".running"


@dataclass
class RunSummary:
    name: str
    path: str
    dataset: str
    model: str
    preset: str | None
    epochs_done: int  # epochs measured (an epoch that --max-steps/--max-minutes ended early counts)
    epochs_planned: int
    best_test_bits_per_dim: float | None  # bits per code for a run over codes
    state: str  # finished, interrupted, running, or stopped (killed while training, nothing saved at the end)
    updated: float  # modification time of its metrics (or config), seconds since the epoch
    codes: bool = False  # a prior over codes: its figures are bits per code

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's per-epoch records (``metrics.jsonl``); a torn last line (a write cut short) is left out."""
    path = run_dir / "metrics.jsonl"
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def mark_running(run_dir: Path) -> None:
    (run_dir / MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}), encoding="utf-8")


def clear_running(run_dir: Path | None) -> None:
    """Remove this process's marker (not another's: a resumed run may have started since)."""
    if run_dir is None:
        return
    marker = run_dir / MARKER
    try:
        if json.loads(marker.read_text(encoding="utf-8")).get("pid") == os.getpid():
            marker.unlink()
    except (OSError, ValueError):
        pass



# -- making and writing a run folder (training) ---------------------------------------------------

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
            f"{needed / 2**20:.1f} MiB; free some space or choose another --runs-dir"
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


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Add an epoch's record to ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    with writing(path), open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def rewrite_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` by ``records`` (a resumed run drops what it will measure again)."""
    path = run_dir / "metrics.jsonl"
    with writing(path):
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


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


# -- listing runs --------------------------------------------------------------------------------

def _alive(marker: Path) -> bool | None:
    """Whether the marker's process runs (None: unknown, another host or unreadable)."""
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True if isinstance(info.get("pid"), int) else None
    return True


def summarize(run_dir: Path) -> RunSummary | None:
    """One run's summary, or None when the folder is not a run."""
    try:
        record = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        config = record["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    metrics = read_metrics(run_dir)
    tests = [m["test_bits_per_dim"] for m in metrics if isinstance(m.get("test_bits_per_dim"), (int, float))]
    finite = [t for t in tests if t == t]  # NaN != NaN
    planned = int(config.get("epochs", 0))
    last = metrics[-1] if metrics else {}
    steps, minutes = config.get("max_steps"), config.get("max_minutes")
    trained = sum(float(m.get("train_seconds", 0.0)) for m in metrics)
    finished = bool(metrics) and (
        int(last.get("epoch", 0)) >= planned
        or (steps is not None and int(last.get("step", 0)) >= int(steps))
        or (minutes is not None and trained >= float(minutes) * 60 * 0.999)
    )
    marker = run_dir / MARKER
    alive = _alive(marker) if marker.exists() else False
    if alive:
        state = "running"
    elif finished:
        state = "finished"
    elif marker.exists() and alive is False:
        state = "stopped"
    else:
        state = "interrupted"
    newest = run_dir / "metrics.jsonl" if (run_dir / "metrics.jsonl").exists() else run_dir / "config.json"
    return RunSummary(
        name=run_dir.name, path=str(run_dir), dataset=str(config.get("dataset")), model=str(config.get("model")),
        preset=config.get("preset"), epochs_done=len({m.get("epoch") for m in metrics}), epochs_planned=planned,
        best_test_bits_per_dim=min(finite) if finite else None, state=state, updated=newest.stat().st_mtime,
        codes=bool((record.get("spec") or {}).get("codes", False)),
    )


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """Every run folder directly under ``runs_dir``, oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise ConfigError(f"no runs folder {root}; train with `pixelcnn train` (runs go to --runs-dir, default runs/)")
    found = [s for s in (summarize(p) for p in root.iterdir() if p.is_dir()) if s is not None]
    return sorted(found, key=lambda s: s.updated)


def resolve_run(name: str, runs_dir: str | Path) -> Path:
    """A run folder given as a path, or as a name under ``runs_dir``."""
    for candidate in (Path(name), Path(runs_dir) / name):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(f"no run {name!r}: neither a run folder nor a run under {runs_dir}/ (see `pixelcnn runs`)")
