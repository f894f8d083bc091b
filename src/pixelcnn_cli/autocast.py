"""What bf16 autocast may not touch: the output head and the likelihood stay fp32.

``--precision bf16`` runs the network's forward under ``torch.autocast``, which computes
convolutions and matrix products in bfloat16 (an 8-bit mantissa: a spacing of 2^-8 near 1).
That is fine for the body of a network, but the output head's values are what the likelihood
reads: PixelCNN++'s mixture means and log-scales, the gated model's 256-way logits. Rounded to
bf16, a mean near 1 moves by up to half of a 256-level bin (``2 / 255``) and a log-scale near -5
by 1/64, so training would optimise a coarsened loss while eval computes it in fp32. The head
is one or two 1x1 layers, a small part of the network's cost, so it runs in fp32 here
(:func:`in_fp32`), and :mod:`pixelcnn_cli.likelihood` computes with autocast off
(:func:`autocast_off`). Outside autocast both change nothing: the same layers on the same fp32
tensors, so the samplers, cached or not, compute exactly what they did.

A model plugin's own head can use :func:`in_fp32` too (it is exported by :mod:`pixelcnn_cli`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Iterator

import torch


def _has_autocast(device_type: str) -> bool:
    available = getattr(torch.amp, "is_autocast_available", None)  # torch >= 2.4
    return available(device_type) if available is not None else device_type in ("cpu", "cuda")


@contextmanager
def autocast_off(device_type: str) -> Iterator[None]:
    """Run the block with autocast disabled for ``device_type`` (``"cpu"``, ``"cuda"``, ...; a
    device without autocast: nothing to disable). Nested inside an enabled autocast, it wins."""
    if not _has_autocast(device_type):
        yield
        return
    with torch.autocast(device_type, enabled=False):
        yield


def to_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 if it is a floating-point tensor of lower precision (bf16, fp16); else ``x`` itself."""
    if x.is_floating_point() and x.dtype.itemsize < 4:
        return x.float()
    return x


def in_fp32(layer: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """``layer(*inputs)`` with autocast off on the inputs' device and low-precision inputs cast to
    float32: the layer computes with its own (fp32) weights whatever autocast is around it.

    For the layer that produces logits or likelihood parameters, e.g.
    ``return in_fp32(self.out, features)`` at the end of a model's ``forward``.
    """
    if not inputs:
        raise ValueError("in_fp32 needs at least one tensor input (its device says which autocast to disable)")
    with autocast_off(inputs[0].device.type):
        return layer(*(to_fp32(x) for x in inputs))
