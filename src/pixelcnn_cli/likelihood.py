"""What a model's output means: the host's one place that turns it into likelihoods.

A model plugin's ``forward`` returns either logits over the levels, ``B x L x C x H x W`` (the
contract every model has had: the likelihood is their softmax), or any output together with two
methods on the model that say what it means (the contract's extension, which a mixture
likelihood needs; see :mod:`pixelcnn_cli.contracts`):

* ``nll(output, x) -> B x C x H x W``: ``-log p`` in nats of each colour of the images ``x``
  (on the input scale) given the colours and pixels before it;
* ``level_log_probs(output, x) -> B x L x C x H x W``: each colour's log-distribution over every
  level, given the earlier colours in ``x``.

Both are computed pixel by pixel (the host passes single pixels when sampling). Training, eval,
the samplers and the causality check all go through :func:`nll_per_dim` and
:func:`level_logits`, so a model with its own likelihood is trained, scored, sampled and
checked exactly as one with logits. Such a model may also say how to draw from it, cheaper
than from every level's probability: ``draw_levels(output, x, colour, uniforms, temperature)``
(the mixture's: a component, a logistic value, its bin); both samplers then draw through it
(:func:`draw_levels`), and through :func:`pick` otherwise.

Both compute in fp32 with autocast off (:func:`~pixelcnn_cli.autocast.autocast_off`), whatever
autocast the caller is in and whatever dtype the output has: under ``--precision bf16`` the loss
training optimises is then the one eval reports, up to the network body's rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .autocast import autocast_off, to_fp32


def inner_model(model: nn.Module, attribute: str) -> nn.Module | None:
    """The module that has ``attribute``: ``model`` itself, or the model inside a
    DistributedDataParallel (``module``) or ``torch.compile`` (``_orig_mod``) wrapper."""
    for candidate in (model, getattr(model, "module", None), getattr(model, "_orig_mod", None)):
        if isinstance(candidate, nn.Module) and callable(getattr(candidate, attribute, None)):
            return candidate
    return None


def nll_per_dim(model: nn.Module, output: torch.Tensor, x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """``-log p`` in nats of every colour of every pixel, ``B x C x H x W`` (``x``: the input, ``levels``: the same as levels)."""
    own = inner_model(model, "nll")
    output = to_fp32(output)
    with autocast_off(output.device.type):
        if own is not None:
            return own.nll(output, x)
        return F.cross_entropy(output, levels, reduction="none")


def level_logits(model: nn.Module, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Unnormalised log-probabilities of every level, ``B x L x C x H x W``: the logits themselves,
    or the model's ``level_log_probs``."""
    own = inner_model(model, "level_log_probs")
    output = to_fp32(output)
    if own is None:
        return output
    with autocast_off(output.device.type):
        return own.level_log_probs(output, x)


def pick(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF sampling: ``logits (B, L)``, ``uniforms (B,)`` -> levels ``(B,)``. ``temperature``
    divides the logits: the distribution over levels raised to ``1 / T``."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    cdf = probs.cumsum(dim=-1)
    below = (cdf < uniforms.to(cdf.device)[:, None]).sum(dim=-1)
    return below.clamp_(max=logits.shape[-1] - 1)


def draw_levels(model: nn.Module, output: torch.Tensor, x: torch.Tensor, colour: int, uniforms: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """Levels ``(B,)`` of colour ``colour`` at one pixel, from the model's output there (``output``
    and ``x`` sliced to ``1 x 1``) and the pixel's uniforms (``B x C``, one per colour): the model's
    own ``draw_levels``, or :func:`pick` from :func:`level_logits` with the colour's uniform."""
    own = inner_model(model, "draw_levels")
    if own is None:
        return pick(level_logits(model, output, x)[:, :, colour, 0, 0], uniforms[:, colour], temperature)
    output = to_fp32(output)
    with autocast_off(output.device.type):
        return own.draw_levels(output, x, colour, uniforms.to(output.device)[:, :, None, None], temperature)[:, 0, 0]
