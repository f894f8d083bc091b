"""The precision policy: sampling and evaluation in full fp32 on CUDA (TF32 off), ``--tf32`` to opt out.

The settings are CUDA's, but torch keeps and reports them on any machine, so the CPU can check
that the right blocks run under them and that the caller's settings come back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pixelcnn_cli
from pixelcnn_cli import evaluation, sampling
from pixelcnn_cli.config import ArchitectureConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.models.gated import GatedPixelCNN
from pixelcnn_cli.tf32 import full_fp32

pytestmark = pytest.mark.skipif(not hasattr(torch.backends.cudnn, "conv"), reason="torch < 2.9: no fp32_precision")

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
        evaluation.nll_terms(model, *loader[0], spec.color_levels, tf32=tf32)
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
