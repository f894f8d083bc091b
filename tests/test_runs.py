"""``pixelcnn runs`` and ``pixelcnn plot``, and the curves.png every run keeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from conftest import QUICK
from PIL import Image

from pixelcnn_cli import runs as run_files
from pixelcnn_cli.plots import COLOURS


def fake_run(root, name, epochs_planned, epochs_done, **config):
    folder = root / name
    folder.mkdir(parents=True)
    record = {"config": {"dataset": "mnist-sample", "model": "gated", "preset": None, "epochs": epochs_planned, **config}}
    (folder / "config.json").write_text(json.dumps(record))
    lines = [{"epoch": e, "step": 10 * e, "test_bits_per_dim": 1.0 / e, "train_bits_per_dim": 1.1 / e,
              "learning_rate": 1e-3, "train_seconds": 30.0} for e in range(1, epochs_done + 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    return folder


def test_states(tmp_path):
    fake_run(tmp_path, "done", 3, 3)
    fake_run(tmp_path, "cut", 3, 1)
    fake_run(tmp_path, "steps", 9, 2, max_steps=20)
    fake_run(tmp_path, "clock", 9, 2, max_minutes=1.0)
    run_files.mark_running(fake_run(tmp_path, "live", 3, 1))  # this process: alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = fake_run(tmp_path, "killed", 3, 1)
    (killed / run_files.MARKER).write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    (tmp_path / "not-a-run").mkdir()
    states = {r.name: r.state for r in run_files.list_runs(tmp_path)}
    assert states == {"done": "finished", "cut": "interrupted", "steps": "finished", "clock": "finished",
                      "live": "running", "killed": "stopped"}
    cut = next(r for r in run_files.list_runs(tmp_path) if r.name == "cut")
    assert (cut.epochs_done, cut.epochs_planned, cut.best_test_bits_per_dim) == (1, 3, 1.0)


def test_a_real_run_its_curves_and_the_commands(cli, tmp_path):
    for name, lr in (("a", "1e-3"), ("b", "1e-4")):
        result = cli("train", *QUICK, "--epochs", "2", "--lr", lr, "--run-name", name)
        assert result.exit_code == 0, result.stderr
    run = tmp_path / "runs" / "a"
    assert not (run / run_files.MARKER).exists()  # cleared at the end
    with Image.open(run / "curves.png") as picture:
        assert picture.format == "PNG" and picture.width > 500
    listed = json.loads(cli("runs", "--json").stdout)
    assert [(r["name"], r["state"], r["epochs_done"], r["epochs_planned"]) for r in listed] == [
        ("a", "finished", 2, 2), ("b", "finished", 2, 2)]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert listed[0]["best_test_bits_per_dim"] == min(m["test_bits_per_dim"] for m in metrics)
    table = cli("runs")
    assert table.exit_code == 0 and "finished" in table.stdout and "2/2" in table.stdout

    result = cli("plot", "a", "runs/b", "-o", "both.png")
    assert result.exit_code == 0, result.stderr
    pixels = np.array(Image.open(tmp_path / "both.png").convert("RGB")).reshape(-1, 3).astype(int)
    for colour in COLOURS[:2]:  # each run's lines are drawn in its colour
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=1) < 30).sum() > 50, colour


def test_a_pipe_gets_every_name_whole(cli, tmp_path):
    """Off a terminal the table is as wide as its cells, not squeezed into 80 columns with ellipses."""
    name = "a-run-with-a-name-long-enough-that-80-columns-would-cut-it"
    fake_run(tmp_path / "runs", name, 3, 3, dataset="some-dataset-of-mine", model="pixelsnail", preset="pixelsnail-cpu")
    table = cli("runs").stdout
    rows = [line for line in table.splitlines() if name in line]
    assert len(rows) == 1 and "some-dataset-of-mine" in rows[0] and "pixelsnail (pixelsnail-cpu)" in rows[0], table
    assert "…" not in table and len(rows[0]) > 80


def test_errors(cli, tmp_path):
    lines = cli("plot", "nope").stderr.splitlines()
    assert lines == ["error: no run 'nope': neither a run folder nor a run under runs/ (see `pixelcnn runs`)"]
    assert cli("runs", "--runs-dir", "missing").stderr.startswith("error: no runs folder missing")
    fake_run(tmp_path / "runs", "empty", 3, 0)
    assert "no finished epoch yet" in cli("plot", "empty").stderr
