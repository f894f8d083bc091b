"""Training that survives: exact resume, interruptions, bad numbers, full disks, schedules, EMA."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from conftest import QUICK, TINY
from torch import nn

from pixelcnn_cli import checkpoint as checkpoint_module
from pixelcnn_cli import registry
from pixelcnn_cli.checkpoint import load_checkpoint
from pixelcnn_cli.config import ArchitectureConfig, TrainConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.training.ema import WeightAverage
from pixelcnn_cli.models.gated import GatedPixelCNN
from pixelcnn_cli.training.schedules import CYCLE_STEPS, lr_factor
from pixelcnn_cli.training import Callback, StopRequest, TrainingInterrupted, train

BASE = dict(dataset="mnist-sample", limit_train_batches=4, limit_test_batches=1, batch_size=8, epoch_samples=0, seed=0,
            device="cpu", hidden_fmaps=6, out_hidden_fmaps=6, hidden_layers=1, causal_ksize=3, hidden_ksize=3)
VOLATILE = {"seconds", "images_per_second", "train_seconds", "train_images"}  # the clock, and where a session began



def config(**changes) -> TrainConfig:
    return TrainConfig(**{**BASE, **changes})


def one_error_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # progress lines may precede
    assert len(lines) == 1, result.stderr
    return lines[0]


def assert_same(a, b, where="checkpoint"):
    """Recursively equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, (where, a, b)


def training_state(path: Path) -> dict:
    """What must match between an uninterrupted and a resumed run (not the clock or the file's flags)."""
    ckpt = load_checkpoint(path)
    state = ckpt["train_state"]
    history = [{k: v for k, v in h.items() if k not in VOLATILE} for h in state["history"]]
    return {
        "model_state": ckpt["model_state"], "raw": state.get("raw_model_state"), "optimizer": ckpt["optimizer_state"],
        "step": ckpt["step"], "best": ckpt["best_bits_per_dim"], "position": state["position"], "history": history,
        "rng": state["rng"], "ema_updates": state.get("ema_updates"),
    }


def metrics_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class StopAt(Callback):
    """Asks for a stop after the ``at``-th training step (or during the ``at``-th evaluation)."""

    def __init__(self, stop: StopRequest, at: int, during_eval: bool = False):
        self.stop, self.at, self.during_eval = stop, at, during_eval
        self.steps = self.evals = 0

    def on_batch_end(self, *args) -> None:
        self.steps += 1
        if not self.during_eval and self.steps == self.at:
            self.stop.request(signal.SIGTERM)

    def on_eval(self, epoch, done, total) -> None:
        if done == 1:
            self.evals += 1
            if self.during_eval and self.evals == self.at:
                self.stop.request(signal.SIGINT)


# -- learning-rate schedules ---------------------------------------------------------------------

def test_schedules_shapes_and_warmup():
    total = 1000
    assert [lr_factor("constant", s, total, 0) for s in (0, 500, 999)] == [1.0, 1.0, 1.0]
    assert lr_factor("cosine", 0, total, 0) == 1.0
    assert lr_factor("cosine", 500, total, 0) == pytest.approx(0.5)
    assert lr_factor("cosine", total, total, 0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("exponential", 0, total, 0) == 1.0
    assert lr_factor("exponential", 500, total, 0) == pytest.approx(0.1)
    assert lr_factor("exponential", total, total, 0) == pytest.approx(0.01)
    # the seed's triangle: lr at 0, 10 lr after CYCLE_STEPS, back to lr after 2 CYCLE_STEPS
    assert lr_factor("cyclic", 0, total, 0) == 1.0
    assert lr_factor("cyclic", CYCLE_STEPS // 2, total, 0) == pytest.approx(5.5)
    assert lr_factor("cyclic", CYCLE_STEPS, total, 0) == pytest.approx(10.0)
    assert lr_factor("cyclic", 2 * CYCLE_STEPS, total, 0) == pytest.approx(1.0)
    # linear warm-up multiplies any schedule
    assert [lr_factor("constant", s, total, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor("cosine", 1, total, 4) == pytest.approx(0.5 * lr_factor("cosine", 1, total, 0))
    with pytest.raises(ValueError):
        lr_factor("sawtooth", 0, total, 0)


def rates_of(cfg: TrainConfig) -> list[float]:
    """Train with ``cfg``; the learning rate after every step."""
    rates = []

    class Rates(Callback):
        def on_batch_end(self, epoch, batch, batches, loss, speed, lr):
            rates.append(lr)

    train(cfg, [Rates()])
    return rates


def test_training_follows_the_schedule(tmp_path):
    rates = rates_of(config(epochs=2, lr_schedule="cosine", warmup_steps=2, learning_rate=1e-3, output_dir=str(tmp_path)))
    total = 8  # 4 batches x 2 epochs
    expected = [1e-3 * lr_factor("cosine", s, total, 2) for s in range(1, total + 1)]  # the rate after each step
    assert rates == pytest.approx(expected)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


# -- resume ---------------------------------------------------------------------------------------

def test_resume_continues_exactly_like_an_uninterrupted_run(cli, tmp_path):
    """2 epochs straight == 1 epoch, then --resume --epochs 2 (the constant schedule does not depend on --epochs)."""
    common = [*QUICK, "--lr-schedule", "constant", "--lr", "3e-3"]
    assert cli("train", *common, "--epochs", "2", "--run-name", "straight").exit_code == 0
    assert cli("train", *common, "--epochs", "1", "--run-name", "split").exit_code == 0
    result = cli("train", "--resume", "runs/split", "--epochs", "2")
    assert result.exit_code == 0, result.stderr
    assert "resuming runs/split/checkpoints/last.pt: epoch 2/2, batch 0/3, step 3" in result.stderr
    straight, split = tmp_path / "runs" / "straight", tmp_path / "runs" / "split"
    assert_same(training_state(straight / "checkpoints" / "last.pt"), training_state(split / "checkpoints" / "last.pt"))
    assert_same(load_checkpoint(straight / "checkpoints" / "best.pt")["model_state"],
                load_checkpoint(split / "checkpoints" / "best.pt")["model_state"])
    assert [m["epoch"] for m in metrics_lines(split)] == [1, 2]
    assert json.loads((split / "config.json").read_text())["config"]["epochs"] == 2


def test_resume_mid_epoch_restores_everything(tmp_path):
    """Cosine schedule with warm-up and EMA, stopped inside epoch 2 and again during an evaluation."""
    settings = dict(epochs=3, lr_schedule="cosine", warmup_steps=3, learning_rate=3e-3, ema=0.8, output_dir=str(tmp_path))
    train(config(**settings, run_name="straight"))

    stop = StopRequest()
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config(**settings, run_name="split"), [StopAt(stop, 6)], stop=stop)
    run = tmp_path / "split"
    assert stopped.value.exit_code == 143 and stopped.value.saved
    assert stopped.value.checkpoint == run / "checkpoints" / "last.pt" and stopped.value.run_dir == run
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["interrupted"] is True and ckpt["step"] == 6
    assert ckpt["train_state"]["position"] == {"epoch": 2, "batch": 2, "evaluated": False}

    stop = StopRequest()  # this time stop while epoch 2 is being evaluated
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config(**settings, run_name="split"), [StopAt(stop, 1, during_eval=True)], stop=stop, resume=run)
    assert stopped.value.exit_code == 130
    position = load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["position"]
    assert position == {"epoch": 2, "batch": 4, "evaluated": False}

    result = train(config(**settings, run_name="split"), resume=run)
    assert [m.epoch for m in result.epochs] == [1, 2, 3]
    straight = training_state(tmp_path / "straight" / "checkpoints" / "last.pt")
    assert_same(straight, training_state(run / "checkpoints" / "last.pt"))
    assert any(not torch.equal(straight["raw"][k], v) for k, v in straight["model_state"].items())  # EMA != raw
    assert [m["epoch"] for m in metrics_lines(run)] == [1, 2, 3]



def test_a_checkpoint_with_the_old_schedule_state_resumes_exactly(tmp_path):
    """Checkpoints written while the rate came from a LambdaLR carry its state and Adam groups
    with ``initial_lr``; they resume as a new one does, the rate set from the step."""
    settings = dict(epochs=2, lr_schedule="cosine", warmup_steps=3, learning_rate=3e-3, output_dir=str(tmp_path))
    train(config(**settings, run_name="straight"))
    stop = StopRequest()
    with pytest.raises(TrainingInterrupted):
        train(config(**settings, run_name="old"), [StopAt(stop, 3)], stop=stop)
    last = tmp_path / "old" / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(last)
    rate = ckpt["optimizer_state"]["param_groups"][0]["lr"]
    assert rate == 3e-3 * lr_factor("cosine", 3, 8, 3)
    ckpt["scheduler_state"] = {"base_lrs": [3e-3], "last_epoch": 3, "verbose": False, "_step_count": 4,
                               "_get_lr_called_within_step": False, "_last_lr": [rate], "lr_lambdas": [None]}
    for group in ckpt["optimizer_state"]["param_groups"]:
        group["initial_lr"] = 3e-3
    checkpoint_module.save_checkpoint(last, ckpt)
    train(config(**settings, run_name="old"), resume=last)
    resumed = training_state(last)
    for group in resumed["optimizer"]["param_groups"]:
        assert group.pop("initial_lr") == 3e-3  # kept from the file, and unused
    assert_same(training_state(tmp_path / "straight" / "checkpoints" / "last.pt"), resumed)


def test_resume_refuses_conflicting_options(cli, tmp_path):
    assert cli("train", *QUICK, "--epochs", "1", "--run-name", "r").exit_code == 0
    line = one_error_line(cli("train", "--resume", "runs/r", "--epochs", "2", "--hidden-fmaps", "8"))
    assert line == "error: --hidden-fmaps: cannot change when resuming (the run has 6, got 8)"
    assert "--color-levels: cannot change" in one_error_line(cli("train", "--resume", "runs/r", "--epochs", "2", "--color-levels", "4"))
    assert "--dataset: cannot change" in one_error_line(cli("train", "--resume", "runs/r", "--epochs", "2", "--dataset", "mnist"))
    assert "nothing to resume" in one_error_line(cli("train", "--resume", "runs/r"))
    assert "nothing to resume at nowhere" in one_error_line(cli("train", "--resume", "nowhere"))
    (tmp_path / "empty").mkdir()
    assert "nothing to resume in empty" in one_error_line(cli("train", "--resume", "empty"))
    # what may change: epochs, rate, clipping, device, evaluation size
    result = cli("train", "--resume", "runs/r/checkpoints/last.pt", "--epochs", "2", "--lr", "1e-5", "--max-norm", "0.5",
                 "--limit-test-batches", "2", "--no-cuda")
    assert result.exit_code == 0, result.stderr
    ckpt = load_checkpoint(tmp_path / "runs" / "r" / "checkpoints" / "last.pt")
    # the rate of the next step follows the new --lr along the (default, cyclic) schedule
    assert ckpt["config"]["learning_rate"] == 1e-5
    assert ckpt["optimizer_state"]["param_groups"][0]["lr"] == 1e-5 * lr_factor("cyclic", ckpt["step"], 0, 0)


def test_max_steps_ends_inside_an_epoch_and_resume_extends_it(cli, tmp_path):
    assert cli("train", *QUICK, "--epochs", "5", "--max-steps", "4", "--run-name", "m").exit_code == 0
    run = tmp_path / "runs" / "m"
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 4 and ckpt["train_state"]["position"] == {"epoch": 2, "batch": 1, "evaluated": True}
    assert [m["step"] for m in metrics_lines(run)] == [3, 4]
    assert "nothing to resume" in one_error_line(cli("train", "--resume", "runs/m"))
    assert cli("train", "--resume", "runs/m", "--max-steps", "7").exit_code == 0
    assert [(m["epoch"], m["step"]) for m in metrics_lines(run)] == [(1, 3), (2, 6), (3, 7)]


# -- interruptions by real signals ------------------------------------------------------------------

def start_training(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "pixelcnn_cli", "train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended early: {process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("training never saved a checkpoint")
        time.sleep(0.02)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_and_says_how_to_resume(cli, tmp_path, signum, code):
    process = start_training(tmp_path, *QUICK, "--lr-schedule", "constant", "--epochs", "1000", "--run-name", "s")
    last = tmp_path / "runs" / "s" / "checkpoints" / "last.pt"
    wait_for(last, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, stderr
    assert f"interrupted by {signal.Signals(signum).name} at epoch" in error_lines[0]
    assert error_lines[0].endswith("resume with: pixelcnn train --resume runs/s")
    ckpt = load_checkpoint(last)
    position = ckpt["train_state"]["position"]
    epochs_done = [m["epoch"] for m in metrics_lines(tmp_path / "runs" / "s")]
    assert epochs_done == list(range(1, position["epoch"]))
    # carry on to the end of the epoch it was in
    result = cli("train", "--resume", "runs/s", "--epochs", str(position["epoch"]))
    assert result.exit_code == 0, result.stderr
    assert [m["epoch"] for m in metrics_lines(tmp_path / "runs" / "s")] == list(range(1, position["epoch"] + 1))


def test_second_signal_stops_at_once(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(StopRequest, "DEBOUNCE_S", 0.0)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job

    class DoubleCtrlC(Callback):
        def __init__(self, *args):  # stands in for the CLI's ResumeNotice(console)
            pass

        def on_batch_end(self, epoch, batch, *args):
            if epoch == 2 and batch == 1:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)

    from pixelcnn_cli.cli import progress

    monkeypatch.setattr(progress, "ResumeNotice", DoubleCtrlC)
    result = cli("train", *QUICK, "--epochs", "3", "--run-name", "c")
    assert result.exit_code == 130
    line = one_error_line(result)
    assert "interrupted again by SIGINT: stopped at once without saving; the last checkpoint is kept: runs/c/checkpoints/last.pt" in line
    ckpt = load_checkpoint(tmp_path / "runs" / "c" / "checkpoints" / "last.pt")
    assert ckpt["interrupted"] is False and ckpt["train_state"]["position"] == {"epoch": 2, "batch": 0, "evaluated": False}
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_sigterm_to_the_process_group_with_workers_saves_and_resumes(cli, tmp_path):
    """A cluster's time limit signals every process of the job: the DataLoader workers too."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [*QUICK, "--lr-schedule", "constant", "--epochs", "1000", "--run-name", "w", "--num-workers", "2"]
    process = subprocess.Popen([sys.executable, "-m", "pixelcnn_cli", "train", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = tmp_path / "runs" / "w"
    wait_for(run / "checkpoints" / "last.pt", process)
    wait_for_epochs(run, 2, process)  # the workers of both loaders are up (test workers persist)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "killed by signal" not in stderr
    assert one_line(stderr).endswith("resume with: pixelcnn train --resume runs/w")
    position = load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["position"]
    result = cli("train", "--resume", "runs/w", "--epochs", str(position["epoch"]), "--num-workers", "2")
    assert result.exit_code == 0, result.stderr
    assert [m["epoch"] for m in metrics_lines(run)] == list(range(1, position["epoch"] + 1))


def wait_for_epochs(run: Path, epochs: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (run / "metrics.jsonl").exists() or len(metrics_lines(run)) < epochs:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"training did not reach epoch {epochs}: {process.communicate()[1]}")
        time.sleep(0.02)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_stop_request_debounces_a_duplicate_delivery():
    stop = StopRequest()
    stop.handle(signal.SIGTERM)
    stop.handle(signal.SIGTERM)  # the launcher forwarding the same signal: ignored
    assert stop.signum == signal.SIGTERM and stop.forced is None
    stop._first_at -= StopRequest.DEBOUNCE_S
    with pytest.raises(KeyboardInterrupt):
        stop.handle(signal.SIGINT)
    assert stop.forced == signal.SIGINT


# -- bad numbers ---------------------------------------------------------------------------------------

class NanAfterOptions(ArchitectureConfig):
    nan_at_step: int = 5


class NanAfter(nn.Module):
    def __init__(self, inner: nn.Module, at: int):
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x, labels=None):
        logits = self.inner(x, labels)
        if self.training:
            self.calls += 1
            if self.calls >= self.at:
                return logits * float("nan")
        return logits


class NanAfterPlugin:
    """A test model whose loss turns NaN at a chosen training step."""

    name = "nan-after"
    options_model = NanAfterOptions

    def build(self, options, spec):
        return NanAfter(GatedPixelCNN(spec, options), options.nan_at_step)


@pytest.fixture
def nan_model():
    registry.models.add(EntryPoint(name="nan-after", value="test_training:NanAfterPlugin", group=registry.MODELS))
    yield "nan-after"
    registry.models.reset()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(cli, tmp_path, nan_model):
    result = cli("train", *QUICK, "--epochs", "4", "--model", nan_model, "--model-option", "nan_at_step=5", "--run-name", "n")
    line = one_error_line(result)
    assert "loss became nan at epoch 2, step 5" in line
    assert "the last good checkpoint is kept: runs/n/checkpoints/last.pt" in line and "lower --lr" in line
    ckpt = load_checkpoint(tmp_path / "runs" / "n" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 3 and ckpt["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt["model_state"].values() if t.is_floating_point())
    assert [m["epoch"] for m in metrics_lines(tmp_path / "runs" / "n")] == [1]


def test_non_finite_loss_before_any_checkpoint(cli, nan_model):
    line = one_error_line(cli("train", *QUICK, "--epochs", "1", "--model", nan_model, "--model-option", "nan_at_step=1"))
    assert "loss became nan at epoch 1, step 1; no checkpoint had been saved yet" in line


class _InfGradient(torch.autograd.Function):
    """Identity forward; its backward sends infinite gradients (the loss stays finite)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class InfGradAfter(NanAfter):
    def forward(self, x, labels=None):
        logits = self.inner(x, labels)
        if self.training:
            self.calls += 1
            if self.calls >= self.at:
                return _InfGradient.apply(logits)
        return logits


class InfGradAfterPlugin(NanAfterPlugin):
    name = "inf-grad-after"

    def build(self, options, spec):
        return InfGradAfter(GatedPixelCNN(spec, options), options.nan_at_step)


def check_bad_gradients_are_never_applied_or_saved(cli, run: Path, quick: list[str]) -> None:
    """Infinite gradients (finite loss) at step 6, the last of epoch 2: a bad step applied there would
    be saved at the epoch's end. ``quick`` picks the device (the CUDA tests reuse this)."""
    registry.models.add(EntryPoint(name="inf-grad-after", value="test_training:InfGradAfterPlugin", group=registry.MODELS))
    try:
        result = cli("train", *quick, "--epochs", "4", "--ema", "0.9", "--model", "inf-grad-after",
                     "--model-option", "nan_at_step=6", "--run-name", run.name)
    finally:
        registry.models.reset()
    line = one_error_line(result)
    assert "gradients became non-finite (loss " in line and "at epoch 2, step 6" in line
    assert f"the last good checkpoint is kept: runs/{run.name}/checkpoints/last.pt" in line
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 3
    weights = [*ckpt["model_state"].values(), *ckpt["train_state"]["raw_model_state"].values()]
    assert all(torch.isfinite(t).all() for t in weights if t.is_floating_point())


def test_non_finite_gradients_with_a_finite_loss_are_never_applied_or_saved(cli, tmp_path):
    check_bad_gradients_are_never_applied_or_saved(cli, tmp_path / "runs" / "g", QUICK)


def test_a_skipped_step_leaves_weights_and_optimiser_as_they_were():
    from pixelcnn_cli.training.optimizer import guarded_step, make_adam

    model = nn.Linear(3, 2)
    optimizer = make_adam(model.parameters(), 0.1, 1e-4, torch.device("cpu"))
    model(torch.ones(1, 3)).sum().backward()
    guarded_step(optimizer, torch.tensor(False))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = [optimizer.state[p]["exp_avg"].clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    guarded_step(optimizer, torch.tensor(True))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(m, optimizer.state[p]["exp_avg"]) for m, p in zip(moments, model.parameters()))
    assert all(float(optimizer.state[p]["step"]) == 1 for p in model.parameters())


# -- the GPU's own checks, made testable on the CPU ----------------------------------------------------------

def test_bf16_on_a_gpu_without_bfloat16_is_refused_up_front(monkeypatch):
    from pixelcnn_cli.errors import ConfigError
    from pixelcnn_cli.training.reproducibility import check_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    with pytest.raises(ConfigError, match=r"--precision bf16: this GPU \(Tesla V100\) has no bfloat16 support; use --precision fp32"):
        check_precision("bf16", torch.device("cuda", 0))
    check_precision("fp32", torch.device("cuda", 0))
    check_precision("bf16", torch.device("cpu"))  # the CPU emulates it


def test_only_running_statistics_are_resent_under_ddp():
    from pixelcnn_cli.distributed import keeps_running_statistics

    spec = ModelSpec(1, 8, 8, 2, 10)
    assert not keeps_running_statistics(GatedPixelCNN(spec, ArchitectureConfig()))  # masks are constant
    assert keeps_running_statistics(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))


class HostReads(Callback):
    """Counts reads of tensor values by the host (each one a wait for a GPU) between progress reports."""

    def __init__(self, monkeypatch):
        self.count, self.between = 0, []
        for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
            original = getattr(torch.Tensor, name)

            def counted(t, *args, _original=original, **kwargs):
                self.count += 1
                return _original(t, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)

    def on_epoch_start(self, *args):
        self.count = 0

    def on_batch_end(self, epoch, batch, *args):
        self.between.append((batch, self.count))
        self.count = 0


@pytest.mark.parametrize("log_every", [1, 4])
def test_the_host_waits_for_the_device_only_where_progress_is_reported(monkeypatch, log_every):
    reads = HostReads(monkeypatch)
    train(config(limit_train_batches=8, epochs=1, log_every=log_every), [reads])
    monkeypatch.undo()
    assert [batch for batch, _ in reads.between] == list(range(log_every, 9, log_every))
    # the same few reads per report (NaN flag, loss), however many steps it covers; none per step
    assert all(count <= 2 for _, count in reads.between[1:]), reads.between


def test_a_resumed_epoch_reports_the_speed_of_its_own_images(tmp_path):
    stop = StopRequest()
    with pytest.raises(TrainingInterrupted):
        train(config(run_name="r", epochs=1), [StopAt(stop, 3)], stop=stop)
    result = train(config(run_name="r", epochs=1), resume=tmp_path / "runs" / "r")
    (epoch,) = result.epochs
    assert epoch.train_images == 8  # the one batch left, not the 32 images of the whole epoch
    assert epoch.images_per_second == pytest.approx(epoch.train_images / epoch.train_seconds)
    full = train(config(run_name="f", epochs=1)).epochs[0]
    assert full.train_images == 32


class UsesPut(nn.Module):
    """A model with an operation that has no deterministic implementation (``put_``)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, labels=None):
        logits = self.inner(x, labels)
        flat = torch.zeros(4)
        flat.put_(torch.tensor([0]), torch.tensor([1.0]))
        return logits + flat[1]


class UsesPutPlugin(NanAfterPlugin):
    name = "uses-put"

    def build(self, options, spec):
        return UsesPut(GatedPixelCNN(spec, options))


def test_deterministic_holds_for_the_run_and_names_what_breaks_it(cli, monkeypatch):
    seen = []

    class Record(Callback):
        def on_batch_end(self, *args):
            seen.append((torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG")))

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    train(config(epochs=1, deterministic=True), [Record()])
    assert seen and all(s == (True, ":4096:8") for s in seen)
    assert torch.are_deterministic_algorithms_enabled() == before  # the caller's setting is back
    registry.models.add(EntryPoint(name="uses-put", value="test_training:UsesPutPlugin", group=registry.MODELS))
    try:
        line = one_error_line(cli("train", *QUICK, "--epochs", "1", "--model", "uses-put", "--deterministic"))
        assert line.startswith("error: --deterministic: ") and "put_" in line and line.endswith("run without --deterministic")
        assert cli("train", *QUICK, "--epochs", "1", "--model", "uses-put").exit_code == 0
    finally:
        registry.models.reset()
    assert torch.are_deterministic_algorithms_enabled() == before


# -- disks and folders ------------------------------------------------------------------------------------

def test_unwritable_run_folder_is_reported_before_training(cli, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    line = one_error_line(cli("train", *QUICK, "--epochs", "1", "--output-dir", "a-file/runs"))
    assert line.startswith("error: cannot write the run folder a-file/runs/") and "Not a directory" in line


def test_too_little_free_space_is_reported_before_training(cli, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    line = one_error_line(cli("train", *QUICK, "--epochs", "1", "--run-name", "d"))
    assert "not enough disk space in runs/d" in line
    assert not (tmp_path / "runs" / "d" / "checkpoints" / "last.pt").exists()


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(cli, tmp_path, monkeypatch):
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 2:  # the first save (last.pt + best.pt) goes through, the next one finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint_module, "_fsync_folder", lambda folder: None)
    monkeypatch.setattr(os, "fsync", fsync)
    line = one_error_line(cli("train", *QUICK, "--epochs", "3", "--run-name", "f"))
    monkeypatch.undo()
    assert "no space left on the device to write runs/f/checkpoints/last.pt" in line
    assert "training stopped at epoch 2, step 6" in line
    folder = tmp_path / "runs" / "f" / "checkpoints"
    assert load_checkpoint(folder / "last.pt")["step"] == 3
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left


# -- EMA -------------------------------------------------------------------------------------------------

def test_weight_average_formula():
    model = nn.Linear(2, 1)
    avg = WeightAverage(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    avg.update(model)  # the first updates use the smaller warm-up decay (1 + n) / (10 + n)
    d = 2 / 11
    assert torch.allclose(avg.model.weight, d * start + (1 - d) * model.weight)
    for _ in range(200):
        avg.update(model)
    assert avg.current_decay() == 0.9
    assert torch.allclose(avg.model.weight, model.weight, atol=1e-6)
    with pytest.raises(ValueError):
        WeightAverage(model, 1.0)


def test_ema_weights_are_what_sample_and_eval_use(cli, tmp_path):
    assert cli("train", *QUICK, "--epochs", "1", "--ema", "0.5", "--run-name", "e").exit_code == 0
    ckpt = load_checkpoint(tmp_path / "runs" / "e" / "checkpoints" / "best.pt")
    raw = ckpt["train_state"]["raw_model_state"]
    assert ckpt["ema_decay"] == 0.5 and ckpt["train_state"]["ema_updates"] == 3
    assert any(not torch.equal(raw[k], v) for k, v in ckpt["model_state"].items())
    result = cli("sample", "-m", "runs/e", "-c", "1", "--output-fname", "one.png")
    assert result.exit_code == 0, result.stderr
    assert one_error_line(cli("train", *QUICK, "--ema", "1")).startswith("error: --ema: ")


def test_bf16_autocast_trains_and_evaluates_in_fp32(cli, tmp_path):
    from pixelcnn_cli.checkpoint import load_checkpoint

    result = cli("train", "--dataset", "mnist-sample", "--epochs", "1", "--limit-train-batches", "2", "--batch-size", "8",
                 "--epoch-samples", "0", "--seed", "0", "--precision", "bf16", "--run-name", "bf16", *TINY)
    assert result.exit_code == 0, result.stderr
    checkpoint = load_checkpoint(tmp_path / "runs" / "bf16" / "checkpoints" / "last.pt")
    assert checkpoint["config"]["precision"] == "bf16"
    assert all(t.dtype == torch.float32 for t in checkpoint["model_state"].values() if t.is_floating_point())
    assert "precision" in cli("train", "--precision", "fp8", "--dataset", "mnist-sample").stderr


def test_compile_is_opt_in_and_trains(cli, tmp_path, monkeypatch):
    # Dynamo traces the model and AOTAutograd builds its backward as for any backend; only the
    # kernel generation is left out (inductor's C++ builds take most of a minute on 2 CPU cores).
    # Inductor itself runs in benchmarks/gpu_check.py's "train compile" step on a GPU.
    compiled = []
    real_compile = torch.compile

    def aot_eager(model, **kwargs):
        compiled.append(type(model).__name__)
        return real_compile(model, backend="aot_eager", **kwargs)

    monkeypatch.setattr(torch, "compile", aot_eager)
    result = cli("train", "--dataset", "mnist-sample", "--epochs", "1", "--limit-train-batches", "1", "--batch-size", "4",
                 "--epoch-samples", "1", "--seed", "0", "--compile", "--run-name", "compiled",
                 "--limit-test-batches", "1", *TINY)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "runs" / "compiled" / "checkpoints" / "best.pt").exists()
    assert compiled == ["GatedPixelCNN"]  # --compile compiled the model, once
    state = load_checkpoint(tmp_path / "runs" / "compiled" / "checkpoints" / "best.pt")["model_state"]
    assert not any(key.startswith("_orig_mod") for key in state)  # the plain model's weights: they load anywhere
