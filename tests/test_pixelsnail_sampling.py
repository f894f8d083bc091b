"""The cached PixelSNAIL sampler (:mod:`pixelcnn_cli.models.pixelsnail.incremental`, a key/value cache
per attention block) against the naive reference and the full forward pass: the same
distributions at every step, the same images."""

from __future__ import annotations

import pytest
import torch
from test_sampling import assert_same_run, both_samplers_agree

from pixelcnn_cli import sampling
from pixelcnn_cli.contracts import ModelSpec, SupportsIncremental
from pixelcnn_cli.data.quantize import levels_to_input
from pixelcnn_cli.models.pixelsnail import PixelSNAILOptions, PixelSNAILPlugin

TINY = {"nr_resnet": 1, "nr_filters": 8, "attention_blocks": 2, "key_size": 4, "value_size": 6,
        "nr_logistic_mix": 3, "dropout": 0.5}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_model(channels: int, levels: int, classes: int, seed: int = 0, **options):
    """A tiny model with noise on every parameter, left in train mode with dropout 0.5: the samplers
    must switch dropout off."""
    torch.manual_seed(seed)
    spec = ModelSpec(channels, 8, 8, levels, classes)
    model = PixelSNAILPlugin().build(PixelSNAILOptions(**{**TINY, **options}), spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model, spec


@pytest.mark.parametrize("channels,levels,classes,size,options", [
    (1, 4, 0, (6, 6), {}),
    (1, 256, 10, (5, 7), {"nonlinearity": "concat_elu"}),
    (3, 16, 10, (6, 5), {}),
    (3, 256, 0, (5, 6), {"nr_resnet": 2}),
])
def test_cached_sampler_equals_naive(channels, levels, classes, size, options):
    model, spec = random_model(channels, levels, classes, **options)
    assert isinstance(model, SupportsIncremental) and sampling.choose_sampler(model) == ("cached", None)
    both_samplers_agree(model, spec, 3, size, seed=1)
    assert model.training  # put back as it was


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (5, 2), (6, 7)])
def test_incremental_state_equals_the_forward_pass_at_every_pixel(size):
    channels, levels, classes, count = 3, 16, 10, 2
    model, _ = random_model(channels, levels, classes, weight_norm=True)
    model.eval()
    labels = torch.tensor([3, 8])
    torch.manual_seed(4)
    x = levels_to_input(torch.randint(levels, (count, channels, *size)), levels)
    with torch.no_grad():
        full = model.level_log_probs(model(x, labels), x)
        state = model.incremental_sampler(labels, count, *size)
        for i in range(size[0]):
            for j in range(size[1]):
                torch.testing.assert_close(state.pixel_logits(j, x[:, :, i]), full[..., i, j], rtol=1e-5, atol=1e-5,
                                           msg=f"pixel {(i, j)}")
            state.end_row(x[:, :, i])
        with pytest.raises(RuntimeError, match="last row"):
            state.end_row(x[:, :, 0])


@pytest.mark.parametrize("channels,classes,keep", [(1, 10, 3), (3, 0, 2)])
def test_completion_equals_naive(channels, classes, keep):
    """Kept rows go through the caches with ``end_row`` alone: their keys and values too."""
    levels, count, size = 16, 2, (6, 5)
    model, spec = random_model(channels, levels, classes)
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
        results[name] = (out, steps)
    assert_same_run(results["naive"], results["cached"])
