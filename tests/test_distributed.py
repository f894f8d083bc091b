"""DistributedDataParallel on the CPU with Gloo: two processes, one run.

Each test bounds its own run time, so a rank that hangs fails the test instead of the CI job.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY

from pixelcnn_cli.checkpoint import load_checkpoint
from pixelcnn_cli.config import TrainConfig
from pixelcnn_cli.training import Callback, StopRequest, TrainingInterrupted, train

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with Gloo")

WORLD = 2
DEADLINE_S = 120
BASE = dict(dataset="mnist-sample", limit_train_batches=3, limit_test_batches=1, batch_size=8, epoch_samples=0, seed=0,
            device="cpu", hidden_fmaps=6, out_hidden_fmaps=6, hidden_layers=1, causal_ksize=3, hidden_ksize=3,
            lr_schedule="constant", learning_rate=3e-3, ema=0.5, run_name="ddp")


class Recorder(Callback):
    """On every rank: the weights at the end, and how the run was set up."""

    all_ranks = True

    def __init__(self, rank: int, out: Path, name: str, stop: StopRequest | None = None, stop_at: int = 0):
        self.rank, self.out, self.name, self.stop, self.stop_at = rank, out, name, stop, stop_at
        self.steps = 0

    def on_train_start(self, info, model):
        self.info, self.model = info, model

    def on_batch_end(self, *args):
        self.steps += 1
        if self.steps == 1:
            self.first_rng = torch.get_rng_state()  # training itself draws nothing here (no dropout)
        if self.stop is not None and self.steps == self.stop_at:
            self.stop.request(signal.SIGTERM)  # only this rank is asked; all must stop together

    def on_train_end(self, result):
        torch.save({"state": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                    "world_size": self.info.world_size, "rank": self.info.rank, "batches": self.info.batches_per_epoch,
                    "steps": self.steps, "run_dir": str(self.info.run_dir), "first_rng": self.first_rng,
                    "end_rng": torch.get_rng_state()},
                   self.out / f"{self.name}-rank{self.rank}.pt")


class MainOnly(Callback):
    """A plain callback: only rank 0 may call it."""

    def __init__(self, rank: int, out: Path):
        self.rank, self.out = rank, out

    def on_epoch_end(self, metrics):
        with open(self.out / f"main-only-rank{self.rank}.txt", "a") as f:
            f.write(f"{metrics.epoch}\n")


@contextlib.contextmanager
def gloo_group(rank: int, init_file: str):
    """One spawned rank's Gloo process group (one thread), torn down however the body ends."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    try:
        yield
    finally:
        gc.collect()
        dist.destroy_process_group()


def _rank(rank: int, init_file: str, out: str) -> None:
    out_dir = Path(out)
    with gloo_group(rank, init_file):
        config = TrainConfig(**BASE, epochs=2, output_dir=str(out_dir / "runs"))
        stop = StopRequest()
        try:  # rank 1 alone asks to stop after its 4th step: epoch 2, batch 1
            train(config, [Recorder(rank, out_dir, "stopped", stop if rank == 1 else None, 4), MainOnly(rank, out_dir)],
                  stop=stop, handle_signals=False)
            raise AssertionError("training was not interrupted")
        except TrainingInterrupted as stopped:
            (out_dir / f"interrupted-rank{rank}.json").write_text(json.dumps(
                {"step": stopped.step, "epoch": stopped.epoch, "code": stopped.exit_code}))
        train(config, [Recorder(rank, out_dir, "resumed"), MainOnly(rank, out_dir)],
              resume=out_dir / "runs" / "ddp", handle_signals=False)
        dist.barrier()  # neither process leaves while the other still talks to it


def run_ranks(fn, tmp_path) -> None:
    """``fn(rank, rendezvous file, tmp_path)`` in WORLD spawned processes, within DEADLINE_S."""
    context = mp.start_processes(fn, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                raise AssertionError(f"the ranks did not finish within {DEADLINE_S} s (a rank hung?)")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


def test_two_gloo_ranks_stay_in_sync_and_write_one_run(tmp_path):
    run_ranks(_rank, tmp_path)

    # both ranks stopped at the same step, though only rank 1 was asked
    stops = [json.loads((tmp_path / f"interrupted-rank{r}.json").read_text()) for r in range(WORLD)]
    assert stops[0] == stops[1] == {"step": 4, "epoch": 2, "code": 143}
    for name in ("stopped", "resumed"):
        ranks = [torch.load(tmp_path / f"{name}-rank{r}.pt") for r in range(WORLD)]
        assert [r["world_size"] for r in ranks] == [WORLD, WORLD] and [r["rank"] for r in ranks] == [0, 1]
        assert ranks[0]["batches"] == ranks[1]["batches"] == 3
        for key, value in ranks[0]["state"].items():  # identical parameters on every rank
            assert torch.equal(value, ranks[1]["state"][key]), (name, key)
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2  # the resumed run trained the rest of epoch 2

    # each rank has its own random stream (dropout must not drop the same units everywhere), and a
    # resumed rank carries on with its own saved stream
    stopped = [torch.load(tmp_path / f"stopped-rank{r}.pt") for r in range(WORLD)]
    assert not torch.equal(stopped[0]["first_rng"], stopped[1]["first_rng"])  # from the first step on
    for r in range(WORLD):
        assert torch.equal(ranks[r]["first_rng"], stopped[r]["end_rng"])

    # one run folder, one set of files, written by rank 0 only
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]
    run = tmp_path / "runs" / "ddp"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 6 and ckpt["train_state"]["world_size"] == WORLD
    for key, value in ckpt["train_state"]["raw_model_state"].items():
        assert torch.equal(value, ranks[0]["state"][key])
    assert (tmp_path / "main-only-rank0.txt").read_text().split() == ["1", "2"]
    assert not (tmp_path / "main-only-rank1.txt").exists()


def run_torchrun(tmp_path, *train_args: str) -> tuple[str, str]:
    """``torchrun --nproc-per-node 2 -m pixelcnn_cli train ARGS`` in ``tmp_path``; (stdout, stderr), rc checked."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD),
               "-m", "pixelcnn_cli", "train", "--dataset", "mnist-sample", "--limit-test-batches", "1",
               "--batch-size", "8", "--epoch-samples", "0", "--seed", "0", "--device", "cpu", *train_args, *TINY]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"torchrun did not finish within {DEADLINE_S} s (a rank left waiting?)")
    assert process.returncode == 0, stderr
    return stdout, stderr


def test_torchrun_ranks_end_a_max_minutes_run_at_the_same_step(tmp_path):
    """--max-minutes under torchrun: the ranks vote at each report step, so none is left waiting."""
    run_torchrun(tmp_path, "--epochs", "3", "--limit-train-batches", "4", "--max-minutes", "0.00001", "--log-every", "2",
                 "--run-name", "tm")
    ckpt = load_checkpoint(tmp_path / "runs" / "tm" / "checkpoints" / "last.pt")
    # the first vote is after step 2 (--log-every 2), and by then both ranks are out of time
    assert ckpt["step"] == 2 and ckpt["train_state"]["position"] == {"epoch": 1, "batch": 2, "evaluated": True}


class InitRecorder(Callback):
    """On every rank: the weights as training starts (after the data-dependent init)."""

    all_ranks = True

    def __init__(self, rank: int, out: Path):
        self.rank, self.out = rank, out

    def on_train_start(self, info, model):
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, self.out / f"init-rank{self.rank}.pt")


def _rank_weight_norm(rank: int, init_file: str, out: str) -> None:
    out_dir = Path(out)
    with gloo_group(rank, init_file):
        config = TrainConfig(dataset="mnist-sample", limit_train_batches=1, limit_test_batches=1, batch_size=4,
                             epoch_samples=0, seed=0, device="cpu", model="pixelcnnpp", color_levels=16,
                             model_options={"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.5,
                                            "weight_norm": True},
                             epochs=1, ema=0.5, run_name="wn", output_dir=str(out_dir / "runs"))
        train(config, [InitRecorder(rank, out_dir)], handle_signals=False)
        dist.barrier()


def test_weight_norm_data_init_is_the_same_on_every_rank(tmp_path):
    """Under DDP the data-dependent init sees the same 16 images on every rank (not each rank's shard),
    so every rank, and the moving average copied from it, starts from the same initialised weights."""
    run_ranks(_rank_weight_norm, tmp_path)
    ranks = [torch.load(tmp_path / f"init-rank{r}.pt") for r in range(WORLD)]
    gains = [k for k in ranks[0] if k.endswith("parametrizations.weight.original0")]
    assert gains, "the model is not weight-normalised"
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key
    # the init ran on the ranks: at registration torch sets g = ||v||, the init sets g from the data
    def norm(v, g):
        return next(torch.norm_except_dim(v, 2, d) for d in (0, 1) if torch.norm_except_dim(v, 2, d).shape == g.shape)
    moved = [k for k in gains if not torch.allclose(ranks[0][k], norm(ranks[0][k[:-1] + "1"], ranks[0][k]))]
    assert len(moved) == len(gains)
    ckpt = load_checkpoint(tmp_path / "runs" / "wn" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 1 and ckpt["train_state"]["world_size"] == WORLD
    assert set(ckpt["train_state"]["raw_model_state"]) == set(ranks[0])


def test_ready_for_ddp_gives_each_weight_its_gradients_strides_and_keeps_its_values():
    from pixelcnn_cli.building import place_model
    from pixelcnn_cli.distributed import ready_for_ddp
    from pixelcnn_cli.config import ArchitectureConfig
    from pixelcnn_cli.contracts import ModelSpec
    from pixelcnn_cli.models.gated.plugin import GatedPixelCNNPlugin

    spec = ModelSpec(1, 12, 12, 2, 10)
    torch.manual_seed(0)
    model = place_model(GatedPixelCNNPlugin().build(ArchitectureConfig(), spec), torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not ready_for_ddp(model, spec, torch.device("cpu"))  # every parameter gets a gradient
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    x = torch.rand(4, 1, 12, 12).contiguous(memory_format=torch.channels_last)
    model(x, torch.zeros(4, dtype=torch.long)).float().sum().backward()
    mismatched = [n for n, p in model.named_parameters() if p.grad.stride() != p.stride()]
    assert mismatched == []
