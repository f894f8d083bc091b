"""The cached PixelCNN++ sampler (:mod:`pixelcnn_cli.models.pixelcnnpp.incremental`) against the
naive reference and the full forward pass: same logits at every step, same images."""

from __future__ import annotations

import pytest
import torch
from test_sampling import assert_same_run, both_samplers_agree, run

from pixelcnn_cli import sampling
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.data.quantize import levels_to_input
from pixelcnn_cli.contracts import SupportsIncremental
from pixelcnn_cli.models.pixelcnnpp import PixelCNNPPOptions, PixelCNNPPPlugin

TINY = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 3, "dropout": 0.5}


@pytest.fixture(autouse=True)
def _one_thread():
    """The naive reference runs hundreds of tiny forward passes, which a second thread only slows down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_model(channels: int, levels: int, classes: int, nr_resnet: int = 1, seed: int = 0):
    """A tiny model with noise on every parameter (label biases start at zero: the noise makes the
    classes matter), left in train mode with dropout 0.5: the samplers must switch dropout off.
    Noise much larger than 0.1 blows the activations up until float rounding, magnified by the
    narrowest logistics, moves the logits by more than the 1e-4 the comparisons allow."""
    torch.manual_seed(seed)
    spec = ModelSpec(channels, 8, 8, levels, classes)
    model = PixelCNNPPPlugin().build(PixelCNNPPOptions(**{**TINY, "nr_resnet": nr_resnet}), spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model, spec


# channels, levels, classes, sample size (H, W), nr_resnet
CASES = [
    (1, 4, 0, (8, 8), 1),
    (1, 256, 10, (7, 9), 1),
    (3, 4, 10, (8, 8), 1),
    (3, 256, 0, (7, 9), 1),
    (3, 16, 5, (5, 6), 2),
]


@pytest.mark.parametrize("channels,levels,classes,size,nr_resnet", CASES)
def test_cached_sampler_equals_naive(channels, levels, classes, size, nr_resnet):
    model, spec = random_model(channels, levels, classes, nr_resnet)
    assert model.training
    both_samplers_agree(model, spec, 3, size, seed=1)
    assert model.training  # put back as it was


@pytest.mark.parametrize("channels,classes,size,keep", [(1, 10, (7, 9), 3), (3, 0, (9, 7), 4), (3, 3, (6, 5), 5)])
def test_completion_equals_naive(channels, classes, size, keep):
    """Kept rows go through the caches with ``end_row`` alone; the first sampled row may be odd or
    even, so the coarser scales' cells of kept rows must be there too."""
    levels = 16
    model, spec = random_model(channels, levels, classes)
    count = 2
    torch.manual_seed(2)
    known = torch.randint(levels, (count, channels, *size))
    labels = torch.arange(count) % classes if classes else None
    uniforms = sampling.draw_uniforms(count, channels, *size, seed=3)
    results = {}
    for name in ("naive", "cached"):
        steps = []
        out = sampling.complete(model, spec, known, keep, labels, uniforms, sampler=name,
                                on_logits=lambda r, c, ch, lg, steps=steps: steps.append(((r, c, ch), lg.clone())))
        assert torch.equal(out[:, :, :keep], known[:, :, :keep])
        assert steps[0][0] == (keep, 0, 0) and len(steps) == channels * (size[0] - keep) * size[1]
        results[name] = (out, steps)
    assert_same_run(results["naive"], results["cached"])


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (5, 2), (6, 7), (13, 11)])
@pytest.mark.parametrize("nr_resnet", [1, 3])
def test_incremental_state_equals_the_forward_pass_at_every_pixel(size, nr_resnet):
    """Given a whole image, every pixel's distributions equal the full forward pass's, at every
    size modulo 4 in both directions (the coarser maps' last cells and the up-sampling's crops)."""
    channels, levels, classes, count = 3, 16, 10, 2
    model, _ = random_model(channels, levels, classes, nr_resnet)
    model.eval()
    labels = torch.tensor([3, 8])
    torch.manual_seed(4)
    x = levels_to_input(torch.randint(levels, (count, channels, *size)), levels)
    with torch.no_grad():
        full = model.level_log_probs(model(x, labels), x)  # (B, L, C, H, W)
        state = model.incremental_sampler(labels, count, *size)
        for i in range(size[0]):
            for j in range(size[1]):
                torch.testing.assert_close(state.pixel_logits(j, x[:, :, i]), full[..., i, j], rtol=1e-5, atol=1e-5,
                                           msg=f"pixel {(i, j)}")
            state.end_row(x[:, :, i])
        with pytest.raises(RuntimeError, match="last row"):
            state.end_row(x[:, :, 0])


def test_one_network_step_per_pixel_serves_every_colour(monkeypatch):
    """The network runs once per pixel, not once per colour; each colour's call reruns only the
    mixture, with the colours drawn so far (G's distribution moves with R, R's does not)."""
    from pixelcnn_cli.models.pixelcnnpp import incremental

    model, spec = random_model(3, 16, 0)
    steps = []
    original = incremental.PixelCNNPPIncrementalState._ul_pixel

    def counted(self, j):
        steps.append((self.row, j))
        return original(self, j)

    monkeypatch.setattr(incremental.PixelCNNPPIncrementalState, "_ul_pixel", counted)
    sampling.sample(model, spec, None, sampling.draw_uniforms(2, 3, 3, 4, seed=0))
    # every pixel once, in order; the last row's cells are computed for its own pixels only
    assert steps == [(i, j) for i in range(3) for j in range(4)]

    model.eval()
    state = model.incremental_sampler(None, 2, 4, 4)
    row = torch.zeros(2, 3, 4)
    first = state.pixel_logits(0, row)
    row[:, 0, 0] = 0.6  # R drawn
    second = state.pixel_logits(0, row)
    torch.testing.assert_close(first[:, :, 0], second[:, :, 0])
    assert not torch.allclose(first[:, :, 1], second[:, :, 1])
    state.pixel_logits(1, row)
    with pytest.raises(RuntimeError, match="already past"):
        state.pixel_logits(0, row)


def test_the_cached_sampler_is_chosen_without_a_notice():
    model, spec = random_model(1, 4, 0)
    assert isinstance(model, SupportsIncremental)
    assert sampling.choose_sampler(model) == ("cached", None)
    assert sampling.choose_sampler(model, "cached") == ("cached", None)
    notices = []
    levels = sampling.sample(model, spec, None, sampling.draw_uniforms(2, 1, 3, 4, seed=0), on_notice=notices.append)
    assert notices == [] and levels.shape == (2, 1, 3, 4)


def test_the_state_wants_eval_mode_and_matching_labels():
    model, _ = random_model(1, 4, 10)
    with pytest.raises(ValueError, match="eval"):
        model.incremental_sampler(torch.zeros(2, dtype=torch.long), 2, 4, 4)
    model.eval()
    with pytest.raises(ValueError, match="labels"):
        model.incremental_sampler(None, 2, 4, 4)
    with pytest.raises(ValueError, match="one class per image"):
        model.incremental_sampler(torch.zeros(3, dtype=torch.long), 2, 4, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cached_sampler_on_cuda():
    """In full fp32 (the samplers' default on CUDA) the two samplers agree there too."""
    model, spec = random_model(3, 16, 10)
    model.cuda()
    labels = torch.arange(3) % 10
    uniforms = sampling.draw_uniforms(3, 3, 5, 6, seed=1)
    assert_same_run(run(model, spec, labels, uniforms, "naive"), run(model, spec, labels, uniforms, "cached"))


def test_sampling_benchmark_runs_pixelcnnpp(capsys):
    import json

    from test_sampling import load_script

    script = load_script("sampling")
    assert script.main(["--model", "pixelcnnpp", "--nr-filters", "8", "--case", "grey16", "--batch-sizes", "2",
                        "--naive-max-pixels", "1", "--repeats", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)["results"][0]
    assert record["model"].startswith("pixelcnnpp (nr_resnet 1, nr_filters 8")
    assert record["images"] == 2 and record["naive_extrapolated"] and record["cached_seconds"] > 0
