"""Models that ship inside the package, named ``pretrained:NAME`` wherever a checkpoint is asked for.

``pixelcnn sample``, ``score`` and ``eval`` fall back to :data:`DEFAULT` when no run exists yet,
and say so. Each file is an inference-only checkpoint (config, spec, weights, the metrics of the
epoch it was taken at; no optimiser or resume state) made by ``scripts/make_pretrained.py``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from .errors import CheckpointError

PREFIX = "pretrained:"
SHIPPED = ("mnist-sample",)
DEFAULT = "mnist-sample"


def is_pretrained(reference: str) -> bool:
    return reference.startswith(PREFIX)


def pretrained_path(reference: str) -> Path:
    """The file of ``pretrained:NAME`` (or of ``NAME``)."""
    name = reference[len(PREFIX):] if is_pretrained(reference) else reference
    if name not in SHIPPED:
        raise CheckpointError(f"no pretrained model {name!r}; shipped: {', '.join(PREFIX + n for n in SHIPPED)}")
    path = Path(str(files("pixelcnn_cli") / "pretrained" / f"{name}.pt"))
    if not path.is_file():
        raise CheckpointError(f"this install of pixelcnn lacks {PREFIX}{name} ({path}); "
                              "make it with scripts/make_pretrained.py")
    return path


def default_path() -> Path | None:
    """The default shipped model's file, or None when this install has none."""
    try:
        return pretrained_path(DEFAULT)
    except CheckpointError:
        return None
