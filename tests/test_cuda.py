"""The CUDA paths of what the CPU tests check, where a GPU is present (skipped elsewhere).

Run them with ``python -m pytest -k cuda`` (``benchmarks/gpu_check.py`` does). Every name here
contains "cuda" so that selection finds them.
"""

from __future__ import annotations


import pytest
import torch
from conftest import QUICK
from test_training import (HostReads, assert_same, check_bad_gradients_are_never_applied_or_saved, config,
                           metrics_lines, training_state)

from pixelcnn_cli.causality import check_causality, full_view_size
from pixelcnn_cli.checkpoint import load_checkpoint
from pixelcnn_cli.config import ArchitectureConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.models.gated import GatedPixelCNN
from pixelcnn_cli.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

ON_CUDA = [("cuda" if a == "cpu" else a) for a in QUICK]  # QUICK pins --device cpu


def test_cuda_deterministic_resume_is_bit_for_bit(cli, tmp_path):
    """With --deterministic, "2 epochs" and "1 epoch, then resume to 2" end identical on a GPU too."""
    common = [*ON_CUDA, "--lr-schedule", "constant", "--lr", "3e-3", "--deterministic"]
    assert cli("train", *common, "--epochs", "2", "--run-name", "straight").exit_code == 0
    assert cli("train", *common, "--epochs", "1", "--run-name", "split").exit_code == 0
    result = cli("train", "--resume", "runs/split", "--epochs", "2")
    assert result.exit_code == 0, result.stderr
    straight, split = tmp_path / "runs" / "straight", tmp_path / "runs" / "split"
    assert_same(training_state(straight / "checkpoints" / "last.pt"), training_state(split / "checkpoints" / "last.pt"))


def test_cuda_deterministic_runs_repeat(cli, tmp_path):
    for name in ("a", "b"):
        assert cli("train", *ON_CUDA, "--epochs", "1", "--deterministic", "--run-name", name).exit_code == 0
    a, b = (load_checkpoint(tmp_path / "runs" / n / "checkpoints" / "last.pt")["model_state"] for n in ("a", "b"))
    assert_same(a, b)


def test_cuda_bad_gradients_are_skipped_and_never_saved(cli, tmp_path):
    check_bad_gradients_are_never_applied_or_saved(cli, tmp_path / "runs" / "g", ON_CUDA)


def test_cuda_host_waits_only_at_reports(monkeypatch):
    reads = HostReads(monkeypatch)
    train(config(device="cuda", limit_train_batches=8, epochs=1), [reads])  # default: every 20 steps, and the epoch end
    monkeypatch.undo()
    assert [batch for batch, _ in reads.between] == [8]


def test_cuda_bf16_and_compile_train(cli, tmp_path):
    for name, extra in (("bf16", ["--precision", "bf16"]), ("compiled", ["--compile"])):
        result = cli("train", *ON_CUDA, "--epochs", "2", "--run-name", name, *extra)
        assert result.exit_code == 0, result.stderr
        assert [m["epoch"] for m in metrics_lines(tmp_path / "runs" / name)] == [1, 2]


@pytest.mark.parametrize("channels", [1, 3])
def test_cuda_gated_model_sees_exactly_the_past(channels):
    spec = ModelSpec(channels, 12, 12, 4, 10)
    model = GatedPixelCNN(spec, ArchitectureConfig(hidden_fmaps=6 * channels, out_hidden_fmaps=7, hidden_layers=2,
                                                   causal_ksize=5, hidden_ksize=3)).cuda()
    side = full_view_size(model, spec)
    report = check_causality(model, spec, side, side)
    assert report.future_violations == 0 and report.blind_spots == 0


def test_cuda_eval_agrees_with_the_cpu(cli, trained):
    """Full fp32 on the GPU: the same bits/dim as the CPU to float rounding."""
    import json

    figures = {}
    for device in ("cpu", "cuda"):
        result = cli("eval", "-m", str(trained), "--json", "--device", device)
        assert result.exit_code == 0, result.stderr
        figures[device] = json.loads(result.stdout.strip().splitlines()[-1])["bits_per_dim"]
    assert figures["cuda"] == pytest.approx(figures["cpu"], rel=1e-5)
