"""PixelSNAIL (``--model pixelsnail``): strictly causal attention, proven by gradients to see every
earlier pixel and nothing else, and trained, evaluated, scored and sampled through the commands."""

from __future__ import annotations

import json

import pytest
import torch
from test_pixelcnnpp import BASE

from pixelcnn_cli import registry
from pixelcnn_cli.causality import check_causality, full_view_size
from pixelcnn_cli.checkpoint import load_checkpoint
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.data.quantize import levels_to_input
from pixelcnn_cli.likelihood import level_logits
from pixelcnn_cli.models.pixelsnail import PixelSNAILOptions
from pixelcnn_cli.models.pixelsnail.net import causal_attention

SMALL = {"nr_resnet": 1, "nr_filters": 8, "attention_blocks": 1, "key_size": 4, "value_size": 4,
         "nr_logistic_mix": 2, "dropout": 0.0}
SMALL_FLAGS = [f for k, v in SMALL.items() for f in ("--model-option", f"{k}={v}")]


def build(channels: int, classes: int = 0, side: int = 8, levels: int = 4, **options):
    spec = ModelSpec(channels, side, side, levels, classes)
    torch.manual_seed(0)
    return registry.models.get("pixelsnail").build(PixelSNAILOptions(**{**SMALL, **options}), spec), spec


def reference_attention(query, key, value):
    """Position n over positions < n, written out: a masked softmax, zero where nothing is before."""
    n = query.shape[1]
    scores = query @ key.transpose(1, 2) / key.shape[2] ** 0.5
    before = torch.ones(n, n, dtype=torch.bool).tril(-1)
    weights = torch.where(before, scores, float("-inf")).softmax(dim=2).nan_to_num(0.0)
    return weights @ value


def test_attention_is_strict_and_the_first_pixel_is_exactly_zero():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 10, d, dtype=torch.float64, requires_grad=True) for d in (4, 4, 6))
    out = causal_attention(q, k, v)
    assert torch.allclose(out, reference_attention(q, k, v), atol=1e-12)
    assert torch.equal(out[:, 0], torch.zeros_like(out[:, 0]))
    # the value at position n never reaches position n or before
    grad = torch.autograd.grad(out[:, 4].sum(), v, retain_graph=True)[0]
    assert grad[:, 4:].abs().max() == 0 and grad[:, :4].abs().min() > 0
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_no_nan_in_bf16_and_the_first_pixel_still_zero():
    model, spec = build(3, 10)
    x = levels_to_input(torch.randint(4, (2, 3, 8, 8)), 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.eval()(x, torch.tensor([1, 7]))
        q = torch.randn(2, 5, 4, dtype=torch.bfloat16)
        mixed = causal_attention(q, q, torch.randn(2, 5, 3, dtype=torch.bfloat16))
    assert torch.isfinite(out).all() and out.dtype == torch.float32  # the head stays fp32
    assert torch.equal(mixed[:, 0], torch.zeros_like(mixed[:, 0]))


@pytest.mark.parametrize("channels, classes, depth", [(1, 0, 1), (3, 10, 1), (1, 10, 2), (3, 0, 2)])
def test_every_output_sees_every_earlier_pixel_and_nothing_else(channels, classes, depth):
    """Gradients through the likelihood (R -> G -> B included): no future input, and, on the whole
    image, no earlier pixel unseen at any distance, one attention block deep or two."""
    model, spec = build(channels, classes, nr_resnet=depth, attention_blocks=depth)
    side = full_view_size(model, spec)
    assert side == 8  # attention: the whole image is in view
    report = check_causality(model.eval(), spec, side, side, max_trials=2)
    assert report.future_violations == 0, report.first_violation()
    assert report.blind_spots == 0, report.first_blind_spot()
    if channels == 3:
        depends = report.depends
        r, g, b = report.index(5, 2, 0), report.index(5, 2, 1), report.index(5, 2, 2)
        assert depends[g, r] and depends[b, r] and depends[b, g] and not depends[r, g]


def test_attention_sees_what_convolutions_of_the_same_depth_cannot():
    """One resnet block and one attention block on 16x16: the last pixel depends on the first, 15
    rows up and 15 columns left, which the shifted convolutions alone reach only after many layers."""
    model, spec = build(1, side=16)
    x = levels_to_input(torch.randint(4, (1, 1, 16, 16)), 4).requires_grad_()
    with torch.no_grad():
        model.eval()
    logits = level_logits(model, model(x), x)
    grad = torch.autograd.grad(logits[0, :, 0, 15, 15].logsumexp(0) - logits[0, 0, 0, 15, 15], x)[0]
    assert grad[0, 0, 0, 0] != 0 and grad[0, 0, 15, 15] == 0
    without = build(1, side=16)[0]
    for block in without.net.attention:  # the attention's contribution cut: the far corner falls out of view
        block.out_block.nin_aux.weight.data.zero_()
    logits = level_logits(without.eval(), without(x), x)
    grad = torch.autograd.grad(logits[0, :, 0, 15, 15].logsumexp(0) - logits[0, 0, 0, 15, 15], x)[0]
    assert grad[0, 0, 0, 0] == 0


def test_train_eval_score_and_sample_through_the_cli(cli, tmp_path):
    result = cli("train", *BASE, "--model", "pixelsnail", *SMALL_FLAGS, "--color-levels", "16", "--epochs", "1",
                 "--run-name", "snail")
    assert result.exit_code == 0, result.stderr
    best = tmp_path / "runs" / "snail" / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(best)
    assert ckpt["config"]["model"] == "pixelsnail" and ckpt["model_options"]["attention_blocks"] == 1
    evaluated = cli("eval", "-m", str(best), "--json", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert 0 < json.loads(evaluated.stdout.strip().splitlines()[-1])["bits_per_dim"] < 4
    scored = cli("score", "-m", str(best), "-o", "rows.csv", "--device", "cpu")
    assert scored.exit_code == 0, scored.stderr
    sampled = cli("sample", "-m", str(best), "-c", "2", "--height", "6", "--width", "6", "--seed", "0",
                  "--label", "3", "--sampler", "naive", "--output-fname", "naive.png", "--device", "cpu")
    assert sampled.exit_code == 0, sampled.stderr
    assert (tmp_path / "naive.png").is_file()


def test_inspect_masks_proves_it_causal_with_no_blind_spot(cli):
    """On 16x16 RGB: attention matters there (the convolutions alone reach a few pixels), and every
    output depends on exactly the earlier pixels and colours, all of them."""
    result = cli("inspect-masks", "--model", "pixelsnail", "--channels", "3", "--size", "16", *SMALL_FLAGS)
    assert result.exit_code == 0, result.stderr
    assert "strictly causal attention" in result.stdout
    assert ("causal: every output depends on exactly the earlier pixels and colours (768 outputs x 768 inputs on a "
            "16x16x3 image)") in result.stdout


def test_weight_norm_initialises_from_data_and_stays_causal():
    model, spec = build(3, 0, weight_norm=True)
    x = levels_to_input(torch.randint(4, (16, 3, 8, 8)), 4)
    model.data_init(x, None)
    report = check_causality(model.eval(), spec, 8, 8, max_trials=1)
    assert report.future_violations == 0 and report.blind_spots == 0


def test_the_cpu_check_of_a_large_model_stays_at_16x16_where_attention_matters():
    from pixelcnn_cli.causality import affordable_size

    model, spec = build(3, side=32)
    assert affordable_size(model, spec, 32, budget=0) == 16
    assert affordable_size(model, spec, 12, budget=0) == 12  # a smaller image is checked whole
