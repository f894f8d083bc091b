"""The precision policy: sampling and evaluation in full fp32 on CUDA (TF32 off), ``--tf32`` to opt out;
under ``--precision bf16`` the output head and the likelihood stay fp32.

The TF32 settings are CUDA's, but torch keeps and reports them on any machine, so the CPU can check
that the right blocks run under them and that the caller's settings come back. bf16 autocast runs
on the CPU too, so the head's and the loss's precision are checked there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import pixelcnn_cli
from pixelcnn_cli import evaluation, in_fp32, sampling
from pixelcnn_cli.config import ArchitectureConfig, TrainConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.data.quantize import levels_to_input
from pixelcnn_cli.likelihood import nll_per_dim
from pixelcnn_cli.models.gated import GatedPixelCNN
from pixelcnn_cli.models.pixelcnnpp.plugin import PixelCNNPP, PixelCNNPPOptions
from pixelcnn_cli.training import Callback, train
from pixelcnn_cli.tf32 import full_fp32

needs_fp32_precision = pytest.mark.skipif(not hasattr(torch.backends.cudnn, "conv"), reason="torch < 2.9: no fp32_precision")

cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul


def tf32_settings() -> tuple[str, str]:
    """What a cuDNN convolution and a cuBLAS matmul would use now."""
    return cudnn.conv.fp32_precision, matmul.fp32_precision


def settings() -> dict:
    """Everything full_fp32 touches, plus whether a later CUDA-wide setting still reaches the
    convolutions (torch 2.14's untouched conv default yields to it; an explicit value does not)."""
    family = cudnn.fp32_precision
    cudnn.fp32_precision = "ieee"
    try:
        family_reaches_conv = cudnn.conv.fp32_precision == "ieee"
    finally:
        cudnn.fp32_precision = family
    return {"family": family, "ops": tf32_settings(), "generic": torch.backends.fp32_precision,
            "family_reaches_conv": family_reaches_conv}


@needs_fp32_precision
def test_full_fp32_turns_tf32_off_and_puts_the_callers_settings_back():
    before = settings()
    with full_fp32():
        assert tf32_settings() == ("ieee", "ieee")
        with full_fp32():  # nested: still off, and the outer block's state comes back
            pass
        assert tf32_settings() == ("ieee", "ieee")
    assert settings() == before
    with pytest.raises(KeyError):
        with full_fp32():
            raise KeyError("boom")
    assert settings() == before
    with full_fp32(enabled=False):
        assert settings() == before


@needs_fp32_precision
def test_full_fp32_overrides_and_restores_explicit_tf32():
    """A caller who asked for TF32 (CUDA-wide, or for matmuls alone) gets fp32 inside and TF32 back."""
    before = settings()
    try:
        cudnn.fp32_precision = "tf32"
        matmul.fp32_precision = "tf32"
        asked = settings()
        with full_fp32():
            assert tf32_settings() == ("ieee", "ieee")
        assert settings() == asked
    finally:
        cudnn.fp32_precision = before["family"]
        matmul.fp32_precision = before["ops"][1]
    assert settings() == before


@needs_fp32_precision
def test_legacy_switches_on_torch_before_2_9():
    """Without fp32_precision (torch < 2.9) the legacy flags are switched and restored. Run in a
    fresh interpreter: on this torch the legacy setters rewrite the new settings for good."""
    script = (
        "import json, torch\n"
        "from pixelcnn_cli.tf32 import full_fp32\n"
        "del type(torch.backends.cudnn).conv\n"
        "b = torch.backends\n"
        "b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = True, True\n"
        "with full_fp32():\n"
        "    inside = [b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32]\n"
        "print(json.dumps([inside, [b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32]]))\n"
    )
    source = str(Path(pixelcnn_cli.__file__).parents[1])  # this checkout's code, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert json.loads(done.stdout) == [[False, False], [True, True]]


class RecordingModel(GatedPixelCNN):
    """Records the TF32 settings in force whenever it computes (forward, or the cached state)."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec, ArchitectureConfig(causal_ksize=3, hidden_ksize=3, hidden_fmaps=4, out_hidden_fmaps=4,
                                                  hidden_layers=1))
        self.seen: list[tuple[str, str]] = []

    def forward(self, x, labels=None):
        self.seen.append(tf32_settings())
        return super().forward(x, labels)

    def incremental_sampler(self, labels, count, height, width):
        self.seen.append(tf32_settings())
        return super().incremental_sampler(labels, count, height, width)


@needs_fp32_precision
def test_sampling_and_evaluation_run_in_full_fp32_unless_tf32():
    torch.manual_seed(0)
    spec = ModelSpec(1, 3, 3, 2, 0)
    model = RecordingModel(spec)
    outside = tf32_settings()
    uniforms = sampling.draw_uniforms(2, 1, 3, 3, seed=0)
    known = torch.zeros(2, 1, 3, 3, dtype=torch.long)
    loader = [(torch.zeros(2, 1, 3, 3, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))]
    device = torch.device("cpu")
    levels = {}
    for tf32, expected in ((False, ("ieee", "ieee")), (True, outside)):
        model.seen.clear()
        levels[tf32] = [sampling.sample(model, spec, None, uniforms, sampler=sampler, tf32=tf32)
                        for sampler in ("naive", "cached")]
        sampling.complete(model, spec, known, 1, None, uniforms, sampler="naive", tf32=tf32)
        sampling.complete(model, spec, known, 1, None, uniforms, sampler="cached", tf32=tf32)
        evaluation.evaluate(model, loader, spec, device, tf32=tf32)
        evaluation.nll_terms(model, *loader[0], spec, tf32=tf32)
        assert model.seen and set(model.seen) == {expected}, (tf32, set(model.seen))
        assert tf32_settings() == outside
    # the CPU computes the same either way
    assert all(torch.equal(a, b) for a, b in zip(levels[False], levels[True]))


def recording_forward(monkeypatch) -> list:
    seen = []
    forward = GatedPixelCNN.forward

    def record(self, x, labels=None):
        seen.append(tf32_settings())
        return forward(self, x, labels)

    monkeypatch.setattr(GatedPixelCNN, "forward", record)
    return seen


@needs_fp32_precision
def test_cli_sample_and_eval_are_full_fp32_unless_tf32(cli, trained, monkeypatch):
    outside = tf32_settings()
    seen = recording_forward(monkeypatch)
    small = ["-m", trained, "-c", "1", "--height", "2", "--width", "2", "--seed", "0", "--sampler", "naive"]
    for extra, expected in (([], ("ieee", "ieee")), (["--tf32"], outside)):
        seen.clear()
        result = cli("sample", *small, *extra, "--output-fname", f"s{len(extra)}.png")
        assert result.exit_code == 0, result.stderr
        assert seen and set(seen) == {expected}
        seen.clear()
        result = cli("eval", "-m", trained, "--json", *extra)
        assert result.exit_code == 0, result.stderr
        assert seen and set(seen) == {expected}
    help_text = " ".join(cli("sample", "--help").stdout.split() + cli("eval", "--help").stdout.split())
    assert help_text.count("--tf32") == 2 and "full fp32" in help_text


# -- bf16 autocast: the head and the likelihood stay fp32 ------------------------------------------

LEVELS, LEVEL = 256, 243  # a level near 1, where bf16's spacing (2^-8) is half a bin (2 / 255)
#: |bf16 loss - fp32 loss| / fp32 loss allowed on the same weights: the body's bf16 rounding leaves
#: at most 2.6e-5 here, where a head rounded to bf16 gave 1.9e-3 to 2.1e-2.
BF16_LOSS_TOLERANCE = 1e-4


def confident_gated(spec: ModelSpec) -> nn.Module:
    """A gated model whose head is as sharp as a trained one's: logits of about 10 to 30 set by the
    bias (the body's contribution scaled down, so what is measured is the head's own rounding)."""
    model = GatedPixelCNN(spec, ArchitectureConfig(causal_ksize=3, hidden_ksize=3, hidden_fmaps=12, out_hidden_fmaps=12,
                                                   hidden_layers=1))
    with torch.no_grad():
        model.head.logits.weight.mul_(0.01)
        bias = model.head.logits.bias.view(spec.channels, LEVELS)
        bias.normal_(0, 8)
        bias[:, LEVEL - 1 : LEVEL + 1] += 25
    return model.eval()


def confident_pixelcnnpp(spec: ModelSpec) -> nn.Module:
    """A PixelCNN++ whose mixtures are as sharp as a trained one's: components about a bin wide
    (log-scale -5.3), their means within half a bin of the data."""
    model = PixelCNNPP(spec, PixelCNNPPOptions(nr_resnet=1, nr_filters=12, nr_logistic_mix=3, dropout=0.0))
    k, c = 3, spec.channels
    with torch.no_grad():
        out = model.net.out
        out.weight.mul_(0.01)
        out.bias[k : k + c * k] = levels_to_input(torch.tensor(LEVEL), LEVELS) + torch.linspace(-0.003, 0.001, c * k)
        out.bias[k + c * k : k + 2 * c * k] = -5.3
    return model.eval()


def loss_and_output_dtype(model: nn.Module, levels: torch.Tensor, bf16: bool) -> tuple[float, torch.dtype]:
    """The training loss (nats/dim) as the loop computes it, forward under autocast when ``bf16``."""
    x = levels_to_input(levels, LEVELS)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            output = model(x)
            loss = nll_per_dim(model, output, x, levels).mean()  # inside autocast too: it must not matter
    return loss.item(), output.dtype


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("build", [confident_gated, confident_pixelcnnpp], ids=["gated", "pixelcnnpp"])
def test_bf16_loss_matches_fp32_on_the_same_weights(build, channels):
    torch.manual_seed(0)
    spec = ModelSpec(channels, 6, 6, LEVELS, 0)
    model = build(spec)
    levels = torch.full((4, channels, 6, 6), LEVEL)
    levels[:, :, ::2] -= 1
    fp32, fp32_dtype = loss_and_output_dtype(model, levels, bf16=False)
    bf16, bf16_dtype = loss_and_output_dtype(model, levels, bf16=True)
    gap = abs(bf16 - fp32) / fp32
    assert gap < BF16_LOSS_TOLERANCE, f"fp32 {fp32:.6f}, bf16 {bf16:.6f} nats/dim: relative gap {gap:.2e}"
    assert fp32_dtype == bf16_dtype == torch.float32  # the head computes in fp32 under autocast


def test_in_fp32_turns_autocast_off_for_the_layer():
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
        assert in_fp32(layer, x).dtype == torch.float32
        assert in_fp32(layer, x.bfloat16()).dtype == torch.float32
        assert layer(x).dtype == torch.bfloat16  # and autocast is back after it
    assert torch.equal(in_fp32(layer, x), layer(x))  # outside autocast: the layer itself


def losses_of(precision: str, tmp_path: Path) -> list[float]:
    """The training loss of each of 30 steps of a tiny gated model on mnist-sample at 256 levels."""
    losses = []

    class Losses(Callback):
        def on_batch_end(self, epoch, batch, batches, loss, speed, lr):
            losses.append(loss)

    cfg = TrainConfig(dataset="mnist-sample", color_levels=LEVELS, unconditional=True, batch_size=8, max_steps=30,
                      epochs=100, limit_test_batches=1, epoch_samples=0, seed=0, device="cpu", learning_rate=2e-2,
                      hidden_fmaps=8, out_hidden_fmaps=8, hidden_layers=1, causal_ksize=3, hidden_ksize=3,
                      precision=precision, output_dir=str(tmp_path), run_name=precision, log_every=1)
    train(cfg, [Losses()])
    assert len(losses) == 30
    return losses


def test_a_short_bf16_run_learns_as_well_as_fp32(tmp_path):
    """30 steps (about 2 s each way): the loss falls from about 8.5 to about 2.3 nats/dim in both."""
    fp32, bf16 = losses_of("fp32", tmp_path), losses_of("bf16", tmp_path)
    final_fp32, final_bf16 = sum(fp32[-5:]) / 5, sum(bf16[-5:]) / 5
    assert final_fp32 < 0.5 * fp32[0]  # it learned something
    assert abs(final_bf16 - final_fp32) / final_fp32 < 0.03, (final_fp32, final_bf16)
