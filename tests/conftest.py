"""Shared fixtures: a CLI runner, a tiny architecture, and isolation from the user's files."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

from pixelcnn_cli.cli.app import app

if os.environ.get("PYTEST_XDIST_WORKER"):
    # under pytest -n, the processes a test starts (CLI runs, torchrun) take this worker's share of
    # the cores, as the test itself does: two threads each on two busy cores only slow both down
    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))

# Small enough that a whole train -> sample -> eval round trip takes seconds on 2 cores.
TINY = ["--hidden-fmaps", "6", "--out-hidden-fmaps", "6", "--hidden-layers", "1",
        "--causal-ksize", "3", "--hidden-ksize", "3"]
# A few batches of mnist-sample on the tiny model, no epoch samples: a training run in about a second.
QUICK = ["--dataset", "mnist-sample", "--limit-train-batches", "3", "--limit-test-batches", "1", "--batch-size", "8",
         "--epoch-samples", "0", "--seed", "0", "--device", "cpu", *TINY]


def one_error_line(result) -> str:
    """The command failed with exactly one line on stderr, an ``error:`` line, and no traceback."""
    assert result.exit_code != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test runs in its own folder, offline, with wandb kept local."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("PIXELCNN_DISABLE_PLUGINS", raising=False)
    torch.set_num_threads(1)  # tiny models: a second thread costs more than it gives
    yield


@pytest.fixture
def all_threads():
    """The cores for a test whose model is big enough to use them (the shipped one, say): all of
    them, or under ``pytest -n N`` this worker's share, since the others are busy too."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner):
    """``cli("train", "--epochs", "1")`` -> click Result (stdout, stderr, exit_code)."""

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture(scope="session")
def _trained_once(tmp_path_factory):
    """The tiny run behind ``trained``, trained once per session in a folder of its own."""
    home = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(home))
        torch.set_num_threads(1)
        result = CliRunner().invoke(app, ["train", "--dataset", "mnist-sample", "--epochs", "1", "--limit-train-batches",
                                          "3", "--batch-size", "16", "--epoch-samples", "2", "--seed", "0",
                                          "--run-name", "tiny", *TINY])
    assert result.exit_code == 0, result.stderr + result.stdout
    return home / "runs" / "tiny"


@pytest.fixture
def trained(_trained_once, tmp_path):
    """A tiny conditional model trained for one short epoch on mnist-sample; returns its best checkpoint.

    The run is trained once per session and copied into each test's folder (``runs/tiny``), so a
    test may change or break its copy freely.
    """
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(_trained_once, run)
    return run / "checkpoints" / "best.pt"
