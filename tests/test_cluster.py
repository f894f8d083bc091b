"""Runs that survive the cluster: real torchrun launches on the CPU (Gloo), on one machine.

A dead worker is one error line; under ``--max-restarts`` torchrun's restart carries on by itself;
two agents of a two-node c10d rendezvous stopped by SIGTERM carry on when launched again with the
same command. The last two end with the weights of the same run left alone, bit for bit. Every
launch is bounded in time, so a rank left waiting fails its test instead of the CI job.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import TINY

from pixelcnn_cli.checkpoint import load_checkpoint

pytestmark = [
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with Gloo"),
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc"),
]

DEADLINE_S = 180
# Two epochs of 150 steps with a checkpoint every 5: a kill or a stop lands mid-epoch, and the
# work lost (the steps since the last checkpoint) is redone exactly.
RUN = ["train", "--dataset", "mnist-sample", "--limit-test-batches", "1", "--batch-size", "8", "--epoch-samples", "0",
       "--seed", "0", "--device", "cpu", "--epochs", "2", "--limit-train-batches", "150", "--checkpoint-every", "5", "--ema", "0.9", *TINY]
STEPS = 2 * 150


def launch(cwd: Path, *torchrun_args: str, run_name: str) -> subprocess.Popen:
    """``torchrun TORCHRUN_ARGS -m pixelcnn_cli train ... --run-name NAME --resume auto`` in ``cwd``."""
    command = [sys.executable, "-m", "torch.distributed.run", *torchrun_args, "-m", "pixelcnn_cli", *RUN,
               "--run-name", run_name, "--resume", "auto"]
    return subprocess.Popen(command, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen, keep_stdout: Path | None = None) -> tuple[int, str]:
    """(exit code, stderr) of a launch, killed (and the test failed) past the deadline; its stdout
    written to ``keep_stdout`` if given."""
    try:
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
        if keep_stdout is not None:
            keep_stdout.write_text(stdout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"torchrun did not finish within {DEADLINE_S} s (a rank left waiting?)") from None
    return process.returncode, stderr


def wait_for_checkpoint(run: Path, *processes: subprocess.Popen) -> None:
    last = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + DEADLINE_S
    while not last.exists() and all(p.poll() is None for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.exists(), "the run never wrote its first checkpoint"


def weights(run: Path) -> tuple[int, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    # the raw weights are stored apart only when a moving average (--ema) is kept
    return ckpt["step"], ckpt["train_state"].get("raw_model_state", ckpt["model_state"]), ckpt["model_state"]


def assert_same_weights(run: Path, alone: Path) -> None:
    step, raw, averaged = weights(run)
    step_alone, raw_alone, averaged_alone = weights(alone)
    assert step == step_alone == STEPS
    for key in raw_alone:
        assert torch.equal(raw[key], raw_alone[key]), key
        assert torch.equal(averaged[key], averaged_alone[key]), key


@pytest.fixture(scope="module")
def left_alone(tmp_path_factory) -> Path:
    """The run of RUN on two processes, never interrupted (its folder ``home/runs/alone``; its output
    in ``home/stdout.txt`` and ``home/stderr.txt``): trained once per session, also under pytest -n,
    where the workers share the session's folder and take turns through a lock."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    home = shared / "cluster-left-alone"
    with open(shared / "cluster-left-alone.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "stderr.txt").exists():
            home.mkdir(exist_ok=True)
            code, stderr = finish(launch(home, "--standalone", "--nproc-per-node", "2", run_name="alone"),
                                  keep_stdout=home / "stdout.txt")
            assert code == 0, stderr
            (home / "stderr.txt").write_text(stderr)
    return home / "runs" / "alone"


def worker_pids(cwd: Path, rank: str | None = None) -> list[int]:
    """The torchrun workers running in ``cwd`` (of that rank)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        env = _env_of(int(pid))
        if env.get("TORCHELASTIC_RUN_ID") is not None and rank in (None, env.get("RANK")) and _cwd_of(int(pid)) == str(cwd):
            found.append(int(pid))
    return found


def _env_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _cwd_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_documented_launch_prints_and_writes_once(left_alone):
    """torchrun starts two processes; only rank 0 prints and writes, and DDP's buckets fit the weights."""
    home = left_alone.parent.parent
    stdout, stderr = (home / "stdout.txt").read_text(), (home / "stderr.txt").read_text()
    assert stderr.count("epoch 2/2 ·") == 1 and stderr.count("run folder runs/alone") == 1, stderr
    assert "Grad strides do not match bucket view strides" not in stderr
    assert stdout.count("best: epoch") == 1
    assert [p.name for p in (home / "runs").iterdir()] == ["alone"]
    ckpt = load_checkpoint(left_alone / "checkpoints" / "last.pt")
    assert ckpt["step"] == STEPS and ckpt["train_state"]["world_size"] == 2


def test_max_restarts_carries_on_after_a_killed_worker_as_if_left_alone(tmp_path, left_alone):
    """torchrun --max-restarts 1: rank 1 SIGKILLed mid-epoch; rank 0 stops with one ``error:`` line
    that says what happened and what to do, not a traceback, and a non-zero exit (torchrun restarts
    only a failed worker group); torchrun restarts both workers with the same command, they resume
    from the last checkpoint and end where the run left alone ends."""
    process = launch(tmp_path, "--standalone", "--nproc-per-node", "2", "--max-restarts", "1", run_name="el")
    try:
        wait_for_checkpoint(tmp_path / "runs" / "el", process)
        rank1 = worker_pids(tmp_path, rank="1")
        assert len(rank1) == 1, rank1
        os.kill(rank1[0], signal.SIGKILL)
    finally:
        code, stderr = finish(process)
    assert code == 0, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]  # rank 0 of the first attempt
    assert len(errors) == 1 and errors[0].startswith("error: rank 0 of 2: another process of this run is gone ("), stderr
    assert errors[0].endswith("The last checkpoint is kept: the same command again with --resume auto carries on "
                              "from it") and "[rank0]: Traceback" not in stderr, stderr
    assert "resuming runs/el/checkpoints/last.pt: epoch " in stderr, stderr
    assert_same_weights(tmp_path / "runs" / "el", left_alone)


def test_two_nodes_stopped_by_sigterm_carry_on_with_the_same_command(tmp_path, left_alone):
    """Two torchrun agents (--nnodes 2, c10d rendezvous on 127.0.0.1) as two machines sharing a
    folder: SIGTERM to both, as a scheduler's requeue sends it, then the same two commands again."""
    nodes = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
             "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "n2"]
    agents = [launch(tmp_path, *nodes, run_name="n2") for _ in range(2)]
    try:
        wait_for_checkpoint(tmp_path / "runs" / "n2", *agents)
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
    finally:
        stopped = [finish(agent) for agent in agents]
    step, _, _ = weights(tmp_path / "runs" / "n2")
    assert 0 < step < STEPS, [s for _, s in stopped]
    assert all(code != 0 for code, _ in stopped), [s for _, s in stopped]
    said = [line for _, s in stopped for line in s.splitlines() if line.startswith("error:")]
    assert said == [f"error: interrupted by SIGTERM at epoch 1, step {step}; saved runs/n2/checkpoints/last.pt; "
                    "the same command again carries on from it (--resume auto)"], said  # rank 0 only
    again = [launch(tmp_path, *nodes, run_name="n2") for _ in range(2)]
    finished = [finish(agent) for agent in again]
    assert all(code == 0 for code, _ in finished), [s for _, s in finished]
    assert any("resuming runs/n2/checkpoints/last.pt" in s for _, s in finished), [s for _, s in finished]
    assert_same_weights(tmp_path / "runs" / "n2", left_alone)
