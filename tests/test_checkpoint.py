"""Checkpoint files: atomic saves that survive SIGKILL, and loading that never runs code or guesses."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import QUICK

from pixelcnn_cli.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, resume_target, run_dir_of, save_checkpoint
from pixelcnn_cli.errors import CheckpointError




class CreatesMarker:
    """Unpickling this object calls ``open(marker, "w")``: it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_refused_and_never_runs(cli, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "config": {}, "spec": {},
                "model_state": {"w": torch.zeros(1)}, "payload": CreatesMarker(marker)}, evil)

    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(evil)
    assert "refusing to load" in str(refused.value) and "nothing in it was run" in str(refused.value)
    assert "open" in str(refused.value)
    for command in ("sample", "eval"):
        result = cli(command, "-m", str(evil))
        assert result.exit_code != 0 and "refusing to load" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()

    # the file is a real threat: an unsafe load would have run it
    torch.load(evil, weights_only=False)
    assert marker.exists()


def bad_files(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected words in the error)."""
    files: dict[str, tuple[Path, str]] = {}

    def add(name: str, expected: str) -> Path:
        path = folder / f"{name}.pt"
        files[name] = (path, expected)
        return path

    data = good.read_bytes()
    add("truncated", "corrupt or truncated").write_bytes(data[: len(data) // 2])
    add("truncated-head", "corrupt or truncated").write_bytes(data[:200])
    add("empty", "the file is empty").write_bytes(b"")
    add("text", "not a pixelcnn checkpoint").write_text("epoch 1: loss 0.3\n")
    with zipfile.ZipFile(add("zip", "not a pixelcnn checkpoint (a zip archive"), "w") as z:
        z.writestr("readme.txt", "not a model")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, add("other-program", "not a pixelcnn checkpoint"))
    torch.save([torch.zeros(2)], add("a-list", "not a pixelcnn checkpoint"))
    newer = load_checkpoint(good)
    newer["format_version"] = FORMAT_VERSION + 1
    torch.save(newer, add("newer", f"has checkpoint format {FORMAT_VERSION + 1}, newer than this pixelcnn reads"))
    incomplete = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": {}}
    torch.save(incomplete, add("incomplete", "not a complete pixelcnn checkpoint"))
    return files


def test_broken_and_foreign_files_are_one_line_errors(cli, trained, tmp_path):
    for name, (path, expected) in bad_files(tmp_path, trained).items():
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(path)
        assert expected in str(error.value), name
        assert "\n" not in str(error.value)
        for command in ("sample", "eval"):
            result = cli(command, "-m", str(path))
            errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
            assert result.exit_code != 0, (name, command)
            assert "Traceback" not in result.stderr + result.stdout, (name, command)
            assert len(errors) == 1 and expected in errors[0], (name, command, result.stderr)
        assert cli("train", "--resume", str(path)).exit_code != 0


def test_missing_and_folder_paths(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        resume_target(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not inside a run folder"):
        run_dir_of(tmp_path / "loose.pt")
    assert run_dir_of(tmp_path / "run" / "checkpoints" / "best.pt") == tmp_path / "run"


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"config": {}, "spec": {}, "model_state": {"w": torch.ones(3)}})

    def broken_replace(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*Input/output error"):
        save_checkpoint(path, {"config": {}, "spec": {}, "model_state": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model_state"]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_sigkill_at_random_moments_never_breaks_the_last_checkpoint(tmp_path):
    """Kill a real training process (saving after every step) at random moments, resume, kill again."""
    rng = random.Random(5)
    run = tmp_path / "runs" / "k"
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*QUICK, "--epochs", "100000", "--checkpoint-every", "1", "--run-name", "k"]
    steps = []
    for attempt in range(2):  # each process takes seconds to start; two kills keep the test short
        command = args if attempt == 0 else ["--resume", str(run)]
        process = subprocess.Popen([sys.executable, "-m", "pixelcnn_cli", "train", *command], cwd=tmp_path, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            before = last.stat().st_mtime_ns if last.exists() else None
            while not last.exists() or last.stat().st_mtime_ns == before:  # wait for this process's first save
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "no checkpoint written"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        ckpt = load_checkpoint(last)
        steps.append(ckpt["step"])
        if best.exists():
            load_checkpoint(best)
        leftovers = [p.name for p in last.parent.iterdir() if p.name not in {"last.pt", "best.pt"}]
        assert all(name.endswith(".tmp") for name in leftovers)  # a killed save may leave its temporary file, never a bad .pt
    assert steps == sorted(steps) and steps[-1] > steps[0]  # each resume carried on from the last save
