"""PixelCNN++ (``--model pixelcnnpp``) in the suite: causal through its likelihood, trained, scored and sampled by the host."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import QUICK
from test_logistic_mixture import independent_nll

from pixelcnn_cli import registry
from pixelcnn_cli.building import restore_model
from pixelcnn_cli.causality import check_causality, full_view_size
from pixelcnn_cli.checkpoint import load_checkpoint
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.data.quantize import levels_to_input, to_levels
from pixelcnn_cli.likelihood import level_logits
from pixelcnn_cli.models.pixelcnnpp import PixelCNNPPOptions

SMALL = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 3, "dropout": 0.0}
SMALL_FLAGS = [f for k, v in SMALL.items() for f in ("--model-option", f"{k}={v}")]
# QUICK without its gated architecture flags
BASE = [a for a in QUICK[: QUICK.index("--hidden-fmaps")]]


def build(channels: int, classes: int, levels: int = 4, **options):
    spec = ModelSpec(channels, 8, 8, levels, classes)
    torch.manual_seed(0)
    return registry.models.get("pixelcnnpp").build(PixelCNNPPOptions(**{**SMALL, **options}), spec), spec


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("classes", [0, 10])
def test_every_colour_depends_on_exactly_the_past_through_the_likelihood(channels, classes):
    """Gradients of each colour's distribution over the levels (the R -> G -> B coupling included),
    through the down- and up-sampling streams: no future input, and no blind spot on the square it sees whole."""
    model, spec = build(channels, classes)
    side = full_view_size(model, spec)
    assert side == 7  # reach 4 * nr_resnet + 2 (see the network's tests)
    report = check_causality(model.eval(), spec, side, side, max_trials=3)
    assert report.future_violations == 0, report.first_violation()
    assert report.blind_spots == 0, report.first_blind_spot()
    if channels == 3:  # G reads the pixel's R, B reads R and G (the mixture's coupled means)
        depends = report.depends
        r, g, b = report.index(3, 4, 0), report.index(3, 4, 1), report.index(3, 4, 2)
        assert depends[g, r] and depends[b, r] and depends[b, g] and not depends[r, g]


def test_the_check_catches_a_likelihood_that_reads_its_own_colour(monkeypatch):
    """Break the coupling so that R's mean moves with R itself: the same check must fail."""
    from pixelcnn_cli.models import mixture as lm

    original = lm._coupled_means

    def peeking(means, coeffs, x):
        coupled = original(means, coeffs, x)
        return torch.cat([coupled[:, :1] + 0.1 * x[:, :1].unsqueeze(2), coupled[:, 1:]], dim=1)

    monkeypatch.setattr(lm, "_coupled_means", peeking)
    model, spec = build(3, 0)
    report = check_causality(model.eval(), spec, 8, 8, max_trials=2)
    assert report.future_violations > 0


def test_level_distributions_sum_to_one_at_every_pixel():
    model, spec = build(3, 10, levels=256)
    x = levels_to_input(torch.randint(256, (2, 3, 8, 8)), 256)
    with torch.no_grad():
        probs = level_logits(model.eval(), model(x, torch.tensor([1, 7])), x).double().exp().sum(dim=1)
    assert torch.allclose(probs, torch.ones_like(probs), atol=1e-5)


def test_train_eval_and_sample_through_the_cli(cli, tmp_path):
    """256 levels: eval's bits/dim is exactly -log2 p(x) / (C H W) of the test digits, computed here independently."""
    result = cli("train", *BASE, "--model", "pixelcnnpp", *SMALL_FLAGS, "--color-levels", "256", "--epochs", "1",
                 "--run-name", "pp")
    assert result.exit_code == 0, result.stderr
    best = tmp_path / "runs" / "pp" / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(best)
    assert ckpt["config"]["model"] == "pixelcnnpp" and ckpt["model_options"]["nr_logistic_mix"] == 3

    evaluated = cli("eval", "-m", str(best), "--json", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.stderr
    record = json.loads(evaluated.stdout.strip().splitlines()[-1])

    model, spec, config = restore_model(ckpt, torch.device("cpu"))
    from pixelcnn_cli.building import build_data

    data = build_data("mnist-sample", ".data", False, {})
    images = torch.stack([data.test[i][0] for i in range(record["images"])])
    labels = torch.tensor([data.test[i][1] for i in range(record["images"])])
    levels = to_levels(images, 256)
    with torch.no_grad():
        params = model.eval()(levels_to_input(levels, 256), labels)
    nats = float(independent_nll(params, levels, 256, SMALL["nr_logistic_mix"]).sum()) / record["images"]
    assert record["nats_per_image"] == pytest.approx(nats, rel=1e-5)
    assert record["bits_per_dim"] == pytest.approx(nats / (28 * 28) / math.log(2), rel=1e-5)

    for sampler in ("cached", "naive"):
        sampled = cli("sample", "-m", str(best), "-c", "2", "--height", "6", "--width", "6", "--seed", "0",
                      "--label", "3", "--sampler", sampler, "--output-fname", f"{sampler}.png", "--device", "cpu")
        assert sampled.exit_code == 0, sampled.stderr
        assert "notice:" not in sampled.stderr  # the cached sampler runs, no fallback
    assert (tmp_path / "cached.png").read_bytes() == (tmp_path / "naive.png").read_bytes()


def test_inspect_masks_proves_it_causal(cli):
    result = cli("inspect-masks", "--model", "pixelcnnpp", "--channels", "3", *SMALL_FLAGS)
    assert result.exit_code == 0, result.stderr
    assert "no masked kernels" in result.stdout and "causal" in result.stdout and "mask A" not in result.stdout


def test_resume_is_exact_with_dropout(cli, tmp_path):
    """Dropout draws from the random state, which a checkpoint carries: 2 epochs == 1 + resume."""
    common = [*BASE, "--model", "pixelcnnpp", *SMALL_FLAGS[:-2], "--model-option", "dropout=0.5",
              "--lr-schedule", "constant", "--color-levels", "16"]
    assert cli("train", *common, "--epochs", "2", "--run-name", "straight").exit_code == 0
    assert cli("train", *common, "--epochs", "1", "--run-name", "split").exit_code == 0
    assert cli("train", "--resume", "runs/split", "--epochs", "2").exit_code == 0
    a = load_checkpoint(tmp_path / "runs" / "straight" / "checkpoints" / "last.pt")["model_state"]
    b = load_checkpoint(tmp_path / "runs" / "split" / "checkpoints" / "last.pt")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
