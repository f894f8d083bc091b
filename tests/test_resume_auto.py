"""``--resume auto``: one command line for the first launch, every restart and a rerun by hand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch
from conftest import QUICK

from pixelcnn_cli.checkpoint import load_checkpoint

AUTO = [*QUICK, "--run-name", "a", "--resume", "auto"]


def epochs_of(run) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_same_command_starts_continues_and_then_has_nothing_to_do(cli, tmp_path):
    first = cli("train", *AUTO, "--epochs", "1")
    assert first.exit_code == 0, first.stderr
    assert load_checkpoint(tmp_path / "runs" / "a" / "checkpoints" / "last.pt")["step"] == 3
    more = cli("train", *AUTO, "--epochs", "2")  # a larger budget may change, as with --resume
    assert more.exit_code == 0, more.stderr
    assert "resum" in more.stderr.lower() and epochs_of(tmp_path / "runs" / "a") == [1, 2]
    again = cli("train", *AUTO, "--epochs", "2")
    assert again.exit_code == 0, again.stderr
    assert again.stderr.strip() == "--resume auto: runs/a already reached its end (step 6, --epochs 2): nothing to do"
    assert epochs_of(tmp_path / "runs" / "a") == [1, 2]
    # plain --resume keeps calling that an error: the user asked for more training
    assert cli("train", "--resume", "runs/a").exit_code != 0


def test_auto_never_continues_a_run_with_other_options_nor_replaces_one(cli, tmp_path):
    assert cli("train", *AUTO, "--epochs", "1").exit_code == 0
    before = (tmp_path / "runs" / "a" / "checkpoints" / "last.pt").read_bytes()
    other = cli("train", *AUTO, "--epochs", "2", "--batch-size", "4")
    assert other.exit_code != 0
    assert other.stderr.strip() == "error: --batch-size: cannot change when resuming (the run has 8, got 4)"
    assert cli("train", *AUTO, "--epochs", "2", "--overwrite").stderr.strip() == (
        "error: --resume auto never replaces a run; drop --overwrite")
    assert (tmp_path / "runs" / "a" / "checkpoints" / "last.pt").read_bytes() == before
    unnamed = cli("train", *QUICK, "--resume", "auto")
    assert unnamed.exit_code != 0 and "--resume auto needs --run-name" in unnamed.stderr
    # a folder that is not an unfinished launch of this run is left alone
    (tmp_path / "runs" / "mine").mkdir()
    (tmp_path / "runs" / "mine" / "notes.txt").write_text("keep")
    foreign = cli("train", *QUICK, "--run-name", "mine", "--resume", "auto")
    assert foreign.exit_code != 0 and "has no checkpoints/last.pt" in foreign.stderr
    assert (tmp_path / "runs" / "mine" / "notes.txt").read_text() == "keep"


def test_a_launch_that_died_before_its_first_checkpoint_is_started_over(cli, tmp_path):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")  # what a launch writes before training
    result = cli("train", *AUTO, "--epochs", "1")
    assert result.exit_code == 0, result.stderr
    assert "runs/a has no checkpoint yet; starting it over" in result.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3


def launch(tmp_path, name: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pixelcnn_cli", "train", *QUICK, "--limit-train-batches", "40", "--epochs", "2",
               "--checkpoint-every", "5", "--run-name", name, *extra]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def test_a_run_stopped_by_sigterm_finishes_with_the_same_command_as_if_left_alone(tmp_path):
    """What a scheduler that requeues does: SIGTERM, then the same command again."""
    straight = launch(tmp_path, "straight")
    first = launch(tmp_path, "a", "--resume", "auto")
    last = tmp_path / "runs" / "a" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 60
    while not last.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 143, stderr  # stopped mid-run, not finished
    stopped_at = load_checkpoint(last)["step"]
    assert 0 < stopped_at < 80
    again = launch(tmp_path, "a", "--resume", "auto")
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    _, stderr = straight.communicate(timeout=120)
    assert straight.returncode == 0, stderr
    resumed = load_checkpoint(last)
    alone = load_checkpoint(tmp_path / "runs" / "straight" / "checkpoints" / "last.pt")
    assert resumed["step"] == alone["step"] == 80
    for key, value in alone["model_state"].items():
        assert torch.equal(value, resumed["model_state"][key]), key
