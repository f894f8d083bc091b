"""The runs under a folder: what each is, how far it got, and whether it is still going.

Read from the files every run folder has (``config.json``, ``metrics.jsonl``) and the marker a
training process keeps while it runs (``.running``: its pid and host), so listing runs needs no
checkpoint loading and no torch.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

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
    best_test_bits_per_dim: float | None
    state: str  # finished, interrupted, running, or stopped (killed while training, nothing saved at the end)
    updated: float  # modification time of its metrics (or config), seconds since the epoch

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
    )


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """Every run folder directly under ``runs_dir``, oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise ConfigError(f"no runs folder {root}; train with `pixelcnn train` (runs go to --output-dir, default runs/)")
    found = [s for s in (summarize(p) for p in root.iterdir() if p.is_dir()) if s is not None]
    return sorted(found, key=lambda s: s.updated)


def resolve_run(name: str, runs_dir: str | Path) -> Path:
    """A run folder given as a path, or as a name under ``runs_dir``."""
    for candidate in (Path(name), Path(runs_dir) / name):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(f"no run {name!r}: neither a run folder nor a run under {runs_dir}/ (see `pixelcnn runs`)")
