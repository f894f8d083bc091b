"""Repeatable runs: the seed, ``--deterministic`` (PyTorch's deterministic algorithms for the length
of a run) and the precision check.

Without it, a run with ``--seed`` repeats bit for bit on the CPU only: on a GPU, cuDNN picks
convolution algorithms whose weight gradients add up in a varying order, and cuBLAS splits its
work by the free workspace, so two runs drift apart in the last bits from the first step. With
it, cuDNN and cuBLAS use only deterministic algorithms (slower) and an operation that has none
stops the run with a one-line error instead of silently differing. cuBLAS needs its workspace
setting (``CUBLAS_WORKSPACE_CONFIG``) before its first use, so it is set here, before the run's
first matrix product, unless the environment already sets it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from ..errors import ConfigError, TrainingError

CUBLAS_WORKSPACE = ":4096:8"  # PyTorch's documented setting for deterministic cuBLAS


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Deterministic algorithms inside (when ``enabled``); the caller's settings come back after."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False  # the benchmark may pick a different algorithm each run
    try:
        yield
    except RuntimeError as error:
        if "deterministic" not in str(error):
            raise
        first = str(error).strip().splitlines()[0]
        raise TrainingError(f"--deterministic: {first}; run without --deterministic") from None
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


def seed_everything(seed: int | None) -> None:
    if seed is not None:
        torch.manual_seed(seed)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 on a GPU that has no bfloat16 (before a run folder is made, not inside the loop)."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(device)
        raise ConfigError(f"--precision bf16: this GPU ({name}) has no bfloat16 support; use --precision fp32")
