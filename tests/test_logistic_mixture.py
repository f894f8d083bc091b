"""The discretised logistic mixture: a proper distribution over the levels, and exactly the paper's likelihood."""

from __future__ import annotations

import pytest
import torch

from pixelcnn_cli.models import mixture as lm

K = 4


def random_case(channels: int, levels: int, seed: int = 0, scale: float = 2.0):
    generator = torch.Generator().manual_seed(seed)
    params = torch.randn(3, lm.channels_for(channels, K), 5, 4, generator=generator) * scale
    data = torch.randint(levels, (3, channels, 5, 4), generator=generator)
    x = data.float() * (2 / (levels - 1)) - 1  # the host's input scale
    return params, data, x


def independent_nll(params: torch.Tensor, data: torch.Tensor, levels: int, mixtures: int = K) -> torch.Tensor:
    """``-log p(pixel)`` in float64 straight from the definition: sigmoid differences, no log space."""
    p, c, K = params.double(), data.shape[1], mixtures  # noqa: N806 (the paper's K)
    b, _, h, w = p.shape
    x = data.double() * (2 / (levels - 1)) - 1
    weights = torch.softmax(p[:, :K], dim=1)
    means = p[:, K : K + c * K].reshape(b, c, K, h, w)
    scales = torch.exp(p[:, K + c * K : K + 2 * c * K].reshape(b, c, K, h, w).clamp(min=-7))
    if c == 3:
        a, bb, cc = torch.tanh(p[:, K + 2 * c * K :].reshape(b, 3, K, h, w)).unbind(1)
        means = torch.stack([means[:, 0], means[:, 1] + a * x[:, :1], means[:, 2] + bb * x[:, :1] + cc * x[:, 1:2]], 1)
    half = 1 / (levels - 1)
    u = (x.unsqueeze(2) + half - means) / scales
    lo = (x.unsqueeze(2) - half - means) / scales
    top, bottom = data.unsqueeze(2) == levels - 1, data.unsqueeze(2) == 0
    # CDF(u) - CDF(l); right of the mean, the same mass as 1 - CDF(l) - (1 - CDF(u)), where those are small
    left_side = torch.where(top, 1.0, torch.sigmoid(u)) - torch.where(bottom, 0.0, torch.sigmoid(lo))
    right_side = torch.where(bottom, 1.0, torch.sigmoid(-lo)) - torch.where(top, 0.0, torch.sigmoid(-u))
    mass = torch.where(lo > 0, right_side, left_side)
    return -torch.log((weights * mass.prod(dim=1)).sum(dim=1))  # B x H x W


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("levels", [2, 4, 256])
def test_every_colour_is_a_distribution_over_the_levels(channels, levels):
    params, _, x = random_case(channels, levels)
    probs = lm.level_log_probs(params, x, levels, K).double().exp()  # B x L x C x H x W
    assert probs.shape == (3, levels, channels, 5, 4)
    assert torch.allclose(probs.sum(dim=1), torch.ones(3, channels, 5, 4, dtype=torch.float64), atol=1e-5)
    assert (probs >= 0).all()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("levels", [2, 4, 256])
def test_nll_is_the_mixture_likelihood_of_the_pixel(channels, levels):
    params, data, x = random_case(channels, levels, seed=1)
    nll = lm.nll(params, x, levels, K)
    assert nll.shape == (3, channels, 5, 4)
    # the colours' conditionals multiply to the pixel's probability under the joint mixture
    assert torch.allclose(nll.sum(dim=1).double(), independent_nll(params, data, levels), rtol=1e-5, atol=1e-5)
    # and each is the distribution level_log_probs gives for that colour, read at its value
    picked = -lm.level_log_probs(params, x, levels, K).gather(1, data.unsqueeze(1)).squeeze(1)
    assert torch.allclose(nll, picked, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
def test_one_colour_alone_is_that_colour_of_all(channels):
    params, _, x = random_case(channels, 256, seed=4)
    every = lm.level_log_probs(params, x, 256, K)
    for colour in range(channels):
        alone = lm.level_log_probs(params, x, 256, K, colour)
        assert alone.shape == (3, 256, 1, 5, 4)
        assert torch.allclose(alone, every[:, :, colour : colour + 1], atol=1e-6)


def exact_nll(params: torch.Tensor, data: torch.Tensor, levels: int, b: int, h: int, w: int) -> float:
    """``-log p(pixel)`` with 600-digit arithmetic (mpmath, which torch's sympy brings): the far tails too."""
    import mpmath

    mpmath.mp.dps = 600  # masses of 1e-200 and below are differences of sigmoids near 1
    p = [mpmath.mpf(v) for v in params[b, :, h, w].double().tolist()]
    c = data.shape[1]
    values = [mpmath.mpf(int(v)) * 2 / (levels - 1) - 1 for v in data[b, :, h, w]]
    top = max(p[:K])
    weights = [mpmath.e ** (v - top) for v in p[:K]]
    weights = [v / sum(weights) for v in weights]
    half = mpmath.mpf(1) / (levels - 1)
    sigmoid = lambda z: 1 / (1 + mpmath.e ** (-z))  # noqa: E731
    total = 0
    for k in range(K):
        mass = weights[k]
        for colour in range(c):
            mean = p[K + colour * K + k]
            if c == 3 and colour:
                coeff = [mpmath.tanh(p[K + 6 * K + j * K + k]) for j in range(3)]
                mean += coeff[0] * values[0] if colour == 1 else coeff[1] * values[0] + coeff[2] * values[1]
            scale = mpmath.e ** max(p[K + c * K + colour * K + k], -7)
            level = int(data[b, colour, h, w])
            upper = 1 if level == levels - 1 else sigmoid((values[colour] + half - mean) / scale)
            lower = 0 if level == 0 else sigmoid((values[colour] - half - mean) / scale)
            mass *= upper - lower
        total += mass
    return float(-mpmath.log(total))


@pytest.mark.parametrize("channels", [1, 3])
def test_extreme_parameters_stay_exact_with_finite_gradients(channels):
    """Scales from tiny to huge, means far outside [-1, 1]: probabilities down to e^-1000 and below,
    which float64 cannot even hold, are still right (checked against 600-digit arithmetic)."""
    params, data, x = random_case(channels, 256, seed=2, scale=30.0)
    params.requires_grad_(True)
    nll = lm.nll(params, x, 256, K)
    assert torch.isfinite(nll).all()
    (grad,) = torch.autograd.grad(nll.sum(), params)
    assert torch.isfinite(grad).all()
    pixel = nll.sum(dim=1).detach()
    for b, h, w in [(0, 0, 0), (1, 2, 3), (2, 4, 1), (0, 3, 2), (2, 1, 3)]:
        assert pixel[b, h, w].item() == pytest.approx(exact_nll(params.detach(), data, 256, b, h, w), rel=1e-5)


def test_green_follows_red_and_blue_follows_both():
    """The coupling: G's distribution moves with the pixel's R value, B's with R and G; R's with neither."""
    params, _, x = random_case(3, 16, seed=3)
    base = lm.level_log_probs(params, x, 16, K)
    for colour in range(3):
        moved = x.clone()
        moved[:, colour] = -moved[:, colour]
        changed = (lm.level_log_probs(params, moved, 16, K) - base).abs().amax(dim=(0, 1, 3, 4)) > 1e-6
        assert changed.tolist() == [False] * (colour + 1) + [True] * (2 - colour)


def test_wrong_parameter_count_is_refused():
    with pytest.raises(ValueError, match="expected 40 parameter maps"):
        lm.nll(torch.zeros(1, 30, 2, 2), torch.zeros(1, 3, 2, 2), 4, K)
