"""Full fp32 arithmetic on CUDA for the computations that promise exact results: sampling and evaluation.

On Ampere and later GPUs PyTorch lets cuDNN convolutions use TF32 (a 10-bit mantissa) by
default, while cuBLAS matrix products stay in fp32. The naive sampler (whole-image
convolutions) and the cached sampler (row convolutions and matrix products) would then round
differently, by about 1e-3 in the logits, and draw different images from the same seed.
:func:`full_fp32` turns TF32 off for both for the length of a block and puts the caller's
settings back afterwards. It changes nothing on the CPU: these settings are CUDA's only.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

IEEE = "ieee"  # the fp32_precision value for full fp32


@contextmanager
def full_fp32(enabled: bool = True) -> Iterator[None]:
    """Run the block with TF32 off for cuDNN convolutions and cuBLAS matmuls (``enabled=False``:
    leave the settings alone), then restore them, also when the block raises."""
    if not enabled:
        yield
        return
    backends = torch.backends
    if not hasattr(backends.cudnn, "conv"):
        # torch < 2.9 has only the legacy switches; 2.9 brought fp32_precision to replace them,
        # and mixing the two APIs can raise, so they serve only here
        saved = backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
        try:
            backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = False
            yield
        finally:
            backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved
        return
    # torch.backends.cudnn.fp32_precision is the whole CUDA backend's setting; its operators
    # (conv, matmul) inherit it unless set on their own. Setting the backend first and an
    # operator only where that did not reach it lets the restore put back exactly what was
    # there: torch 2.14's untouched conv default reads "tf32" but is an internal "default"
    # marker that no value written from Python reproduces (it yields to backend settings).
    family = backends.cudnn
    ops = (backends.cudnn.conv, backends.cuda.matmul)
    saved_family = family.fp32_precision
    saved_ops = [op.fp32_precision for op in ops]
    try:
        family.fp32_precision = IEEE
        for op in ops:
            if op.fp32_precision != IEEE:  # set on its own (by the caller, or an older torch's explicit default)
                op.fp32_precision = IEEE
        yield
    finally:
        family.fp32_precision = saved_family
        for op, value in zip(ops, saved_ops):
            if op.fp32_precision != value:
                op.fp32_precision = value
