"""Drawing from the discretised logistic mixture by its story (a component, a logistic value, its
bin): the pixel's joint distribution is the likelihood's, temperature acts as documented, and the
edges of the uniforms' range give valid levels."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from test_logistic_mixture import independent_nll

from pixelcnn_cli.models import mixture as lm

K = 4


def draw_pixels(params: torch.Tensor, channels: int, levels: int, count: int, seed: int, temperature: float = 1.0):
    """``count`` pixels drawn colour by colour from ``params`` (``1 x P x 1 x 1``), as a sampler
    does (each colour's call sees the colours drawn before it): levels ``count x C``."""
    generator = torch.Generator().manual_seed(seed)
    uniforms = torch.rand(count, channels, 1, 1, generator=generator, dtype=torch.float64)
    x = torch.zeros(count, channels, 1, 1)
    many = params.expand(count, -1, -1, -1)
    for colour in range(channels):
        drawn = lm.draw_levels(many, x, colour, uniforms, levels, K, temperature)
        x[:, colour] = drawn.float() * (2 / (levels - 1)) - 1
    return torch.round((x[:, :, 0, 0] + 1) * ((levels - 1) / 2)).long()


def joint_probabilities(params: torch.Tensor, channels: int, levels: int) -> torch.Tensor:
    """``p(pixel)`` of every pixel value (in ``itertools.product`` order), straight from the definition."""
    every = torch.tensor(list(itertools.product(range(levels), repeat=channels)))
    nll = independent_nll(params.expand(len(every), -1, -1, -1), every[:, :, None, None], levels)
    return torch.exp(-nll[:, 0, 0])


def assert_draws_follow(drawn: torch.Tensor, expected: torch.Tensor, levels: int):
    """The histogram of ``drawn`` pixels against ``expected`` probabilities, within five standard errors."""
    channels, count = drawn.shape[1], drawn.shape[0]
    code = sum(drawn[:, c] * levels ** (channels - 1 - c) for c in range(channels))  # product order
    seen = torch.bincount(code, minlength=levels ** channels).double() / count
    error = (expected * (1 - expected) / count).sqrt() + 1e-6
    assert expected.sum().item() == pytest.approx(1.0, abs=1e-9)
    worst = ((seen - expected).abs() / error).max().item()
    assert worst < 5, f"a pixel value is {worst:.1f} standard errors off"


@pytest.mark.parametrize("channels,levels", [(1, 16), (3, 6)])
def test_the_joint_distribution_of_a_pixel_is_the_likelihoods(channels, levels):
    generator = torch.Generator().manual_seed(channels)
    params = torch.randn(1, lm.channels_for(channels, K), 1, 1, generator=generator) * 1.5
    drawn = draw_pixels(params, channels, levels, 1 << 19, seed=1)
    assert_draws_follow(drawn, joint_probabilities(params, channels, levels), levels)


@pytest.mark.parametrize("temperature", [0.5, 1.7])
def test_temperature_raises_the_weights_and_multiplies_the_scales(temperature):
    """At ``T`` the draw is the mixture whose weights are raised to ``1 / T`` and whose scales are
    multiplied by ``T`` (log-scales well above the clamp, so the two agree exactly)."""
    channels, levels = 3, 6
    generator = torch.Generator().manual_seed(7)
    params = torch.randn(1, lm.channels_for(channels, K), 1, 1, generator=generator)
    tempered = params.clone()
    tempered[:, :K] /= temperature
    tempered[:, K + channels * K : K + 2 * channels * K] += math.log(temperature)
    drawn = draw_pixels(params, channels, levels, 1 << 19, seed=2, temperature=temperature)
    assert_draws_follow(drawn, joint_probabilities(tempered, channels, levels), levels)


def test_a_cold_draw_is_the_likeliest_components_mean():
    channels, levels = 3, 256
    params = torch.randn(5, lm.channels_for(channels, K), 1, 1, generator=torch.Generator().manual_seed(3))
    params[:, K : K + channels * K] = params[:, K : K + channels * K].clamp(-0.9, 0.9)
    uniforms = torch.rand(5, channels, 1, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = torch.zeros(5, channels, 1, 1)
    drawn = lm.draw_levels(params, x, 0, uniforms, levels, K, temperature=1e-6)[:, 0, 0]
    best = params[:, :K, 0, 0].argmax(dim=1)
    red_means = params[torch.arange(5), K + best, 0, 0]
    assert torch.equal(drawn, torch.round((red_means + 1) * 127.5).long())


def test_the_ends_of_the_uniforms_range_give_the_end_levels():
    """A uniform of 0 or just below 1 reaches the open end bins (the logistic's infinite tails),
    and a component of weight 0 is never the one drawn."""
    levels = 8
    params = torch.zeros(3, lm.channels_for(1, K), 1, 1)
    params[:, 0] = -1e4  # component 0 weighs nothing
    params[:, 1] = 5.0
    params[:, K + 0] = -50.0  # component 0's mean is far below: drawing it would give level 0
    uniforms = torch.tensor([0.0, 0.5, 1 - 2 ** -53], dtype=torch.float64).view(3, 1, 1, 1)
    drawn = lm.draw_levels(params, torch.zeros(3, 1, 1, 1), 0, uniforms, levels, K)[:, 0, 0]
    assert drawn.tolist() == [0, drawn[1].item(), levels - 1]
    assert 0 < drawn[1].item() < levels - 1  # the middle uniform: component 1's logistic near 0


def test_later_colours_do_not_change_an_earlier_colours_draw():
    """Colour ``c`` reads only the uniforms of colours 0 and ``c``, and the values before it."""
    channels, levels = 3, 16
    params = torch.randn(4, lm.channels_for(channels, K), 1, 1, generator=torch.Generator().manual_seed(5))
    uniforms = torch.rand(4, channels, 1, 1, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x = torch.rand(4, channels, 1, 1) * 2 - 1
    green = lm.draw_levels(params, x, 1, uniforms, levels, K)
    changed_u, changed_x = uniforms.clone(), x.clone()
    changed_u[:, 2], changed_x[:, 1:] = 0.123, 0.9
    assert torch.equal(lm.draw_levels(params, changed_x, 1, changed_u, levels, K), green)


def test_wrong_parameter_count_is_refused():
    with pytest.raises(ValueError, match="parameter maps"):
        lm.draw_levels(torch.zeros(1, 7, 1, 1), torch.zeros(1, 1, 1, 1), 0, torch.zeros(1, 1, 1, 1), 4, K)
