"""The discretised logistic mixture likelihood of PixelCNN++ (Salimans et al. 2017), for 2 to 256 levels;
PixelCNN++ and PixelSNAIL share it.

A network gives, at every pixel, the parameters of a mixture of ``K`` components over the
whole pixel (one mixture indicator for all its colours):

* grey: ``K`` mixture logits, ``K`` means, ``K`` log-scales (``3K`` maps);
* RGB: ``K`` logits, ``3K`` means, ``3K`` log-scales and ``3K`` coefficients (``10K`` maps). The
  means of G and B move linearly with the same pixel's R (and G) values, as in the paper:
  ``mu_G = m_G + a * x_R``, ``mu_B = m_B + b * x_R + c * x_G`` (``a, b, c = tanh(...)``).

The map order is ``[logits | means (C x K) | log-scales (C x K) | coefficients (3K, RGB)]``.

Level ``k`` of ``L`` sits at ``x_k = 2k / (L - 1) - 1`` (the host's input scale), and its bin is
``[x_k - h, x_k + h]`` with ``h = 1 / (L - 1)``; the first bin is open below and the last open
above, so the probabilities of the ``L`` levels sum to 1 for any parameters. Every probability is
computed in log space and without cancellation: ``sigmoid(u) - sigmoid(l)`` is rewritten as
``sigmoid(u) * sigmoid(-l) * (1 - exp(-(u - l)))``, where ``u - l`` (the bin's width over the
scale) is known exactly, so narrow bins need no approximate fallback (the paper used the density
at the bin's centre there).

The per-colour likelihoods are conditionals: ``p(R)``, ``p(G | R)``, ``p(B | R, G)``, each a
mixture whose weights are the components' posteriors given the colours before it. Their sum of
logs is ``log p(pixel)``; :func:`nll` returns them per colour, and :func:`level_log_probs` gives
each colour's distribution over all levels (sampling and the causality check use it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Smallest log-scale: a component narrower than this (about a 1/1100th of the [-1, 1] range)
#: only sharpens rounding errors (the paper's bound).
MIN_LOG_SCALE = -7.0


def channels_for(channels: int, mixtures: int) -> int:
    """Maps a network must output for ``channels`` data channels and ``mixtures`` components."""
    if channels == 1:
        return 3 * mixtures
    if channels == 3:
        return 10 * mixtures
    raise ValueError(f"the logistic mixture models 1 or 3 channels, not {channels}")


def _split(params: torch.Tensor, channels: int, mixtures: int):
    """``B x P x H x W`` -> logits ``B x K x H x W``, means, log-scales ``B x C x K x H x W``, coefficients ``B x 3 x K x H x W``."""
    b, p, h, w = params.shape
    if p != channels_for(channels, mixtures):
        raise ValueError(f"expected {channels_for(channels, mixtures)} parameter maps, got {p}")
    k, c = mixtures, channels
    logits = params[:, :k]
    means = params[:, k : k + c * k].reshape(b, c, k, h, w)
    log_scales = params[:, k + c * k : k + 2 * c * k].reshape(b, c, k, h, w).clamp(min=MIN_LOG_SCALE)
    coeffs = torch.tanh(params[:, k + 2 * c * k :].reshape(b, 3, k, h, w)) if c == 3 else None
    return logits, means, log_scales, coeffs


def _coupled_means(means: torch.Tensor, coeffs: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """Each colour's component means, moved by the same pixel's earlier colours (``x``: ``B x C x H x W``)."""
    if coeffs is None:
        return means
    r, g = x[:, 0:1], x[:, 1:2]  # B x 1 x H x W, broadcast over the components
    return torch.stack(
        [means[:, 0], means[:, 1] + coeffs[:, 0] * r, means[:, 2] + coeffs[:, 1] * r + coeffs[:, 2] * g], dim=1
    )


def log_bin_probs(values: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, levels: int) -> torch.Tensor:
    """``log P(bin of values)`` under logistics ``(means, exp(log_scales))`` (all broadcast together).

    ``values`` are level positions on the input scale (``2k / (L - 1) - 1``).
    """
    half = 1.0 / (levels - 1)
    inv_scale = torch.exp(-log_scales)
    centred = values - means
    upper = inv_scale * (centred + half)  # the bin's edges, standardised
    lower = inv_scale * (centred - half)
    # sigmoid(u) - sigmoid(l) = sigmoid(u) * sigmoid(-l) * (1 - exp(-(u - l))): no difference of
    # two close numbers, and u - l = width / scale is known without subtracting u and l
    width = inv_scale * (2 * half)
    log_width = math.log(2 * half) - log_scales
    tiny = width < 1e-4  # log(1 - exp(-d)) = log(d) - d/2 + O(d^2): exact there, and no underflow
    log_gap = torch.where(tiny, log_width - width / 2, torch.log(-torch.expm1(-width.clamp(min=1e-4))))
    inner = F.logsigmoid(upper) + F.logsigmoid(-lower) + log_gap
    first = values < -1.0 + half / 2  # level 0: open below
    last = values > 1.0 - half / 2  # level L-1: open above
    return torch.where(first, F.logsigmoid(upper), torch.where(last, F.logsigmoid(-lower), inner))


def _cumulative(params: torch.Tensor, x: torch.Tensor, levels: int, mixtures: int):
    """Per component, the log-probability of each colour's value, and the mixture log-weights."""
    c = x.shape[1]
    logits, means, log_scales, coeffs = _split(params, c, mixtures)
    coupled = _coupled_means(means, coeffs, x)
    per_colour = log_bin_probs(x.unsqueeze(2), coupled, log_scales, levels)  # B x C x K x H x W
    return F.log_softmax(logits, dim=1), per_colour, coupled, log_scales


def nll(params: torch.Tensor, x: torch.Tensor, levels: int, mixtures: int) -> torch.Tensor:
    """``-log p(colour | earlier colours of the pixel, earlier pixels)`` in nats, ``B x C x H x W``.

    ``x`` holds the data on the input scale (exactly the level positions). The sum over colours
    is ``-log p(pixel)`` under the mixture.
    """
    log_weights, per_colour, _, _ = _cumulative(params.float(), x.float(), levels, mixtures)
    joint = log_weights.unsqueeze(1) + per_colour.cumsum(dim=1)  # B x C x K x H x W: log pi_k + sum_{c' <= c}
    upto = torch.logsumexp(joint, dim=2)  # log p(x_1..x_c) per pixel: B x C x H x W
    before = torch.cat([torch.zeros_like(upto[:, :1]), upto[:, :-1]], dim=1)
    return before - upto


def level_log_probs(params: torch.Tensor, x: torch.Tensor, levels: int, mixtures: int,
                    colour: int | None = None) -> torch.Tensor:
    """Each colour's log-distribution over all ``levels`` given the earlier colours in ``x``: ``B x L x C x H x W``
    (with ``colour``, that colour's alone: ``B x L x 1 x H x W``, a third of the work for RGB).

    Colour ``c`` uses ``x`` only for the colours before it (its coupled mean and the components'
    posterior weights), never its own value or later ones.
    """
    params, x = params.float(), x.float()
    log_weights, per_colour, coupled, log_scales = _cumulative(params, x, levels, mixtures)
    # the components' log-weights before colour c: log pi_k + sum_{c' < c} log p_k(x_c')
    before = torch.cat([torch.zeros_like(per_colour[:, :1]), per_colour[:, :-1].cumsum(dim=1)], dim=1)
    prior = log_weights.unsqueeze(1) + before  # B x C x K x H x W
    if colour is not None:
        pick = slice(colour, colour + 1)
        prior, coupled, log_scales = prior[:, pick], coupled[:, pick], log_scales[:, pick]
    prior = prior - torch.logsumexp(prior, dim=2, keepdim=True)
    grid = torch.linspace(-1.0, 1.0, levels, device=x.device, dtype=x.dtype).view(1, levels, 1, 1, 1, 1)
    each = log_bin_probs(grid, coupled.unsqueeze(1), log_scales.unsqueeze(1), levels)  # B x L x C' x K x H x W
    return torch.logsumexp(prior.unsqueeze(1) + each, dim=3)


def draw_levels(params: torch.Tensor, x: torch.Tensor, colour: int, uniforms: torch.Tensor, levels: int,
                mixtures: int, temperature: float = 1.0) -> torch.Tensor:
    """Levels of colour ``colour`` drawn at every position (``B x H x W``, long), given the earlier
    colours in ``x`` and the position's uniforms (``uniforms``: ``B x C x H x W`` in [0, 1), one per
    colour; colour ``c`` reads those of colours 0 and ``c``).

    The draw follows the mixture's own story instead of computing all ``levels`` probabilities of
    all components, as the paper's sampler does: one component for the whole pixel (the first
    colour's uniform chooses it), then each colour's value from that component's logistic (its
    mean moved by the colours drawn before it), and the bin the value falls in (the first and last
    bins open). The pixel's joint distribution is the mixture's, so each colour's given the earlier
    ones is what :func:`level_log_probs` gives, at ``O(K)`` work instead of ``O(K L)``. Each colour
    call recomputes the component from the first uniform (the same numbers give the same choice),
    so colours can be drawn one call at a time. The first colour's uniform serves twice: within
    the chosen component's share of ``[0, 1)``, its position rescaled to ``[0, 1)`` is again uniform
    and independent of the choice; the value is the logistic's inverse CDF ``mu + s log(u / (1 - u))``.
    Everything is computed in float64.

    ``temperature`` ``T`` acts on both draws: the mixture weights are raised to ``1 / T`` and the
    logistic scales multiplied by ``T``. ``T = 1`` is the model; below 1 the likelier components
    win more often and each is sharper (towards the most probable component's mean), above 1 the
    reverse.
    """
    channels, k = x.shape[1], mixtures
    if params.shape[1] != channels_for(channels, k):
        raise ValueError(f"expected {channels_for(channels, k)} parameter maps, got {params.shape[1]}")
    params, x = params.double(), x.double()
    weights = torch.softmax(params[:, :k] / temperature, dim=1)  # B x K x H x W
    cdf = weights.cumsum(dim=1)
    first = uniforms[:, :1].to(cdf) * cdf[:, -1:]  # scaled by the total, so rounding cannot pass the end
    chosen = (cdf < first).sum(dim=1, keepdim=True).clamp(max=k - 1)  # B x 1 x H x W
    if colour == 0:
        share = weights.gather(1, chosen)
        below = cdf.gather(1, chosen) - share
        # a component of weight 0 is chosen only by a uniform of exactly 0: any position will do
        u = torch.where(share > 0, ((first - below) / share.clamp(min=1e-300)).clamp(0.0, 1.0),
                        torch.full_like(first, 0.5))
    else:
        u = uniforms[:, colour : colour + 1].to(cdf)

    def component(start: int) -> torch.Tensor:  # the chosen component's value of the K maps from `start`
        return params[:, start : start + k].gather(1, chosen)

    mean = component(k + colour * k)
    log_scale = component(k + (channels + colour) * k).clamp(min=MIN_LOG_SCALE)
    coeffs = k + 2 * channels * k  # a, b, c: G moves with R; B with R and G
    if colour == 1:
        mean = mean + torch.tanh(component(coeffs)) * x[:, 0:1]
    elif colour == 2:
        mean = mean + torch.tanh(component(coeffs + k)) * x[:, 0:1] + torch.tanh(component(coeffs + 2 * k)) * x[:, 1:2]
    value = mean + torch.exp(log_scale) * temperature * (torch.log(u) - torch.log1p(-u))  # +-inf: the end bins
    position = torch.round((value + 1) * ((levels - 1) / 2))
    return position.clamp(0, levels - 1)[:, 0].long()
