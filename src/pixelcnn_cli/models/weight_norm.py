"""Weight normalisation with data-dependent initialisation (Salimans & Kingma 2016, arXiv 1602.07868).

Every convolution's weight becomes ``w = g * v / ||v||`` (one norm per output channel) through
``torch.nn.utils.parametrizations.weight_norm``: ``module.weight`` is then computed from ``g`` and
``v`` on every access, so code that reads ``.weight`` (the cached sampler) gets the effective weight,
and the parametrisation is kept by ``state_dict`` (keys ``parametrizations.weight.original0`` (g)
and ``original1`` (v)), ``copy.deepcopy`` (the moving average) and ``torch.compile``.

Data-dependent initialisation (the paper's section 3; openai/pixel-cnn runs it on a first batch of
16 images): on an init batch, each layer's pre-activations ``t = (v . x) / ||v||`` get mean
``mu`` and standard deviation ``sigma`` per output channel; the layer is set to ``g = s / sigma``,
``b = -mu * s / sigma`` (``s``: its init scale), so its outputs on that batch have mean 0 and
standard deviation ``s``. Layers are initialised in forward order, each on inputs from the
layers already initialised before it: one forward pass, in which a hook on each layer sets its
``g, b`` from the output and hands the network the output the initialised layer gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

#: openai/pixel-cnn draws ``v`` from N(0, 0.05); after the data-dependent init only its direction matters.
V_INIT_STD = 0.05
#: Added to the variance, as openai/pixel-cnn does, so a constant channel gives a finite scale.
VARIANCE_EPS = 1e-10


def norm_dim(module: nn.Module) -> int:
    """The weight's output-channel dimension: 0 for ``Conv2d`` (out, in, kh, kw), 1 for
    ``ConvTranspose2d`` (in, out, kh, kw); ``weight_norm`` keeps one norm per index of it."""
    if isinstance(module, nn.ConvTranspose2d):
        return 1
    if isinstance(module, nn.Conv2d):
        return 0
    raise TypeError(f"weight norm covers Conv2d and ConvTranspose2d, not {type(module).__name__}")


def convolutions(root: nn.Module) -> list[nn.Module]:
    """Every ``Conv2d`` and ``ConvTranspose2d`` (1x1 "nin" layers included) under ``root``."""
    return [m for m in root.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def apply_weight_norm(layers: Iterable[nn.Module]) -> None:
    """Weight-normalise ``layers`` in place, starting from openai's initialisation: ``v`` from
    N(0, 0.05), ``b = 0`` and ``g = ||v||`` (so ``w = v`` until :func:`data_init` sets ``g, b``)."""
    for module in layers:
        if parametrize.is_parametrized(module, "weight"):
            continue
        with torch.no_grad():
            module.weight.normal_(0.0, V_INIT_STD)
            if module.bias is not None:
                module.bias.zero_()
        weight_norm(module, "weight", dim=norm_dim(module))


def is_weight_normed(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight")


def _gain(module: nn.Module) -> torch.Tensor:
    return module.parametrizations.weight.original0  # g; v is original1


def data_init(run: Callable[[], Any], scales: dict[nn.Module, float]) -> None:
    """Initialise every layer in ``scales`` (weight-normed, with a bias) from its own outputs in
    ``run()``, one forward pass of the network on the init batch, run here without gradients.

    Each layer must run exactly once in that pass (a layer run twice would be initialised on
    its first input only)."""
    done: set[nn.Module] = set()

    def before(module: nn.Module, args: Any) -> None:
        if module in done:
            raise RuntimeError(f"data_init: a {type(module).__name__} ran twice in one forward pass")
        # g = 1, b = 0: the layer computes t = (v . x) / ||v||, whose statistics set g and b
        _gain(module).fill_(1.0)
        module.bias.zero_()

    def after(module: nn.Module, args: Any, t: torch.Tensor) -> torch.Tensor:
        # per output channel (dim 1 of the output, for both kinds of convolution), over the
        # batch and every position
        dims = [d for d in range(t.dim()) if d != 1]
        mean = t.float().mean(dim=dims)
        scale = scales[module] / torch.sqrt(t.float().var(dim=dims, unbiased=False) + VARIANCE_EPS)
        _gain(module).copy_(scale.reshape(_gain(module).shape))
        module.bias.copy_(-mean * scale)
        done.add(module)
        # what the initialised layer computes on this input, so the layers after it see it
        shape = [1, -1] + [1] * (t.dim() - 2)
        return ((t - mean.reshape(shape)) * scale.reshape(shape)).to(t.dtype)

    for module in scales:
        if not is_weight_normed(module) or module.bias is None:
            raise ValueError(f"data_init: every layer must be weight-normed with a bias ({type(module).__name__})")
    handles = [h for m in scales for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    missed = len(scales) - len(done)
    if missed:
        raise RuntimeError(f"data_init: {missed} of {len(scales)} weight-normed layers did not run in the init pass")


@contextlib.contextmanager
def fixed_random_numbers(device: torch.device, seed: int = 0) -> Iterator[None]:
    """Random numbers (dropout's, in the init pass) from ``seed`` inside, the caller's stream
    untouched outside: the init is then a function of the weights and the batch alone, the same
    on every torchrun rank and in every run."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:  # only the forked generators: the process's other GPUs keep theirs
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def init_from_batch(net: nn.Module, x: torch.Tensor, labels: torch.Tensor | None, scales: dict[nn.Module, float],
                    *extra: torch.Tensor) -> None:
    """:func:`data_init` of ``net`` on the batch ``x``, the pass run in train mode, dropout on, as
    openai/pixel-cnn's init pass does (the layers are then scaled for the training steps that
    follow), with dropout drawn from a fixed seed so the init depends on ``x`` and the weights only."""
    was_training = net.training
    net.train()
    try:
        with fixed_random_numbers(x.device):
            data_init(lambda: net(x, labels, *extra), scales)
    finally:
        net.train(was_training)
