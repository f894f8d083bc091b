"""The causality check in chunks: the same dependency maps as the check of every output at once,
and memory that stays flat however many outputs a chunk would need."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pixelcnn_cli import causality, registry
from pixelcnn_cli.causality import affordable_size, check_causality, check_cost, full_view_size
from pixelcnn_cli.config import ArchitectureConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.likelihood import level_logits
from pixelcnn_cli.models.pixelcnnpp import PixelCNNPPOptions

ROOT = Path(__file__).resolve().parent.parent


def reference_check(model, spec, height, width, max_trials=8, seed=0):
    """The check as it was before chunking: every output's gradient from its own copy of the input
    (a batch of all of them), the same random probes, the model's ReLUs leaky."""
    model = causality._leaky_copy(model).eval()
    c, n = spec.channels, spec.channels * height * width
    generator = torch.Generator().manual_seed(seed)
    depends = torch.zeros(n, n, dtype=torch.bool)
    for trial in range(max_trials):
        if trial >= 2 and not (~depends & torch.ones(n, n, dtype=torch.bool).tril(-1)).any():
            break
        x = torch.rand(1, c, height, width, generator=generator) * 2 - 1
        level_weights = torch.randn(spec.color_levels, generator=generator)
        label = torch.randint(max(spec.num_classes, 1), (1,), generator=generator)
        xb = x.expand(n, -1, -1, -1).clone().requires_grad_(True)
        logits = level_logits(model, model(xb, label.expand(n) if spec.num_classes else None), xb)
        outputs = torch.arange(n)
        pixel, channel = outputs // c, outputs % c
        picked = logits[outputs, :, channel, pixel // width, pixel % width]
        (grad,) = torch.autograd.grad((picked * level_weights).sum(), xb)
        depends |= grad.permute(0, 2, 3, 1).reshape(n, n) != 0
    return depends


def gated(channels: int, classes: int = 10):
    spec = ModelSpec(channels, 8, 8, 4, classes)
    arch = ArchitectureConfig(causal_ksize=3, hidden_ksize=3, hidden_fmaps=6, out_hidden_fmaps=4, hidden_layers=2)
    torch.manual_seed(1)
    return registry.models.get("gated").build(arch, spec), spec


def pixelcnnpp(channels: int, classes: int = 10):
    spec = ModelSpec(channels, 8, 8, 4, classes)
    torch.manual_seed(2)
    options = PixelCNNPPOptions(nr_resnet=1, nr_filters=8, nr_logistic_mix=3, dropout=0.0)
    return registry.models.get("pixelcnnpp").build(options, spec), spec


@pytest.mark.parametrize("build", [gated, pixelcnnpp])
@pytest.mark.parametrize("channels", [1, 3])
def test_chunks_find_exactly_what_one_batch_of_every_output_finds(build, channels):
    model, spec = build(channels)
    side = full_view_size(model, spec)  # gated: 4, pixelcnnpp: 7
    expected = reference_check(model, spec, side, side)
    n = channels * side * side
    for chunk in (1, 7, n, None):
        for batched in (False, True):
            report = check_causality(model, spec, side, side, chunk=chunk, batched=batched)
            assert torch.equal(report.depends, expected), (chunk, batched)
    assert report.ok  # and the verdict is today's: causal


@pytest.mark.parametrize("build", [gated, pixelcnnpp])
def test_copies_of_the_input_find_the_same_as_batched_backwards(build, monkeypatch):
    """A model with an op that has no batching rule is checked with a copy of the input per output."""
    model, spec = build(3)
    expected = check_causality(model, spec, 4, 4, batched=True).depends
    for chunk in (5, None):
        assert torch.equal(check_causality(model, spec, 4, 4, chunk=chunk, batched=False).depends, expected)


def test_an_op_without_a_batching_rule_falls_back_to_copies(monkeypatch):
    model, spec = gated(1)
    expected = check_causality(model, spec, 4, 4, chunk=3).depends
    calls = []

    def unbatchable(*args):
        calls.append(1)
        if len(calls) > 2:  # fail part-way, as the first unbatchable op would
            raise RuntimeError("Batching rule not implemented for aten::something")
        return real(*args)

    real = causality._batched_view
    monkeypatch.setattr(causality, "_batched_view", unbatchable)
    assert torch.equal(check_causality(model, spec, 4, 4, chunk=3, batched=True).depends, expected)
    monkeypatch.setattr(causality, "_batched_view", lambda *a: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):
        check_causality(model, spec, 4, 4, batched=True)


def test_the_chunk_follows_the_memory_budget(monkeypatch):
    """The smaller the budget, the more chunks, and the same maps."""
    model, spec = pixelcnnpp(1)
    sizes = []
    real = causality._copies_view

    def recording(model, x, label, outputs, weights):
        sizes.append(len(outputs))
        return real(model, x, label, outputs, weights)

    monkeypatch.setattr(causality, "_copies_view", recording)
    maps, chunks = [], []
    for budget in (1 << 30, 1 << 21, 1):
        sizes.clear()
        maps.append(check_causality(model, spec, 6, 6, memory_budget=budget, batched=False).depends)
        chunks.append((len(sizes), max(sizes)))
    assert chunks[0][1] == 36 and chunks[0][0] < chunks[1][0] < chunks[2][0]
    assert chunks[1][1] < 36 and chunks[2][1] == 1
    assert all(torch.equal(m, maps[0]) for m in maps)


def test_a_large_model_is_checked_on_a_square_that_fits_the_cpu_budget():
    model, spec = pixelcnnpp(3)
    full = full_view_size(model, spec)
    assert affordable_size(model, spec, full) == full  # a small model: the whole view
    assert affordable_size(model, spec, full, budget=check_cost(model, 3, 5)) == 5
    assert affordable_size(model, spec, full, budget=0) == 2


PEAK = textwrap.dedent("""
    import json, resource, sys, torch
    torch.set_num_threads(1)
    from pixelcnn_cli import registry
    from pixelcnn_cli.causality import check_causality
    from pixelcnn_cli.contracts import ModelSpec
    from pixelcnn_cli.models.pixelcnnpp import PixelCNNPPOptions
    def peak_kib():
        # this process's own peak (VmHWM starts anew at exec); ru_maxrss would start at the
        # parent's size, a pytest worker's gigabyte, and hide the check's growth below it
        try:
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    filters, side, budget = (int(a) for a in sys.argv[1:])
    spec = ModelSpec(1, 28, 28, 4, 0)
    torch.manual_seed(0)
    model = registry.models.get("pixelcnnpp").build(
        PixelCNNPPOptions(nr_resnet=1, nr_filters=filters, nr_logistic_mix=2, dropout=0.0), spec)
    before = peak_kib()
    report = check_causality(model, spec, side, side, max_trials=2, memory_budget=budget, batched=False)
    after = peak_kib()
    print(json.dumps({"grown_mib": (after - before) / 1024, "ok": report.future_violations == 0}))
""")


def _peak(filters: int, side: int, budget: int) -> dict:
    done = subprocess.run([sys.executable, "-c", PEAK, str(filters), str(side), str(budget)], capture_output=True,
                          text=True, timeout=300, check=True, env={"PYTHONPATH": ":".join(sys.path)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_stays_within_the_budget_as_the_model_and_image_grow():
    """In 64 MiB chunks the check grows by less than twice the budget, at two model widths and two
    image sizes; the same check in one chunk (144 copies at once, about 500 MiB) grows past that."""
    budget = 64 << 20
    for filters, side in ((16, 8), (32, 12)):
        result = _peak(filters, side, budget)
        assert result["ok"]
        assert result["grown_mib"] < 2 * budget / (1 << 20), (filters, side, result)
    assert _peak(32, 12, 1 << 40)["grown_mib"] > 2 * budget / (1 << 20)
