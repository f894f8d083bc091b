"""pixelcnn: the Gated PixelCNN as a command-line suite and a small library.

What a plugin author or a notebook needs is importable from here.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("pixelcnn-cli")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

from .errors import PixelCNNError  # noqa: E402

# The plugin contract needs torch; it is imported on first use, so that `pixelcnn --help` and
# shell completion answer without loading PyTorch (PEP 562).
_CONTRACTS = ("DatasetPlugin", "EmptyOptions", "ImageData", "ModelPlugin", "ModelSpec", "TensorImageDataset")


if TYPE_CHECKING:
    from .contracts import DatasetPlugin, EmptyOptions, ImageData, ModelPlugin, ModelSpec, TensorImageDataset


def __getattr__(name: str):
    if name in _CONTRACTS:
        from . import contracts

        return getattr(contracts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "DatasetPlugin",
    "EmptyOptions",
    "ImageData",
    "ModelPlugin",
    "ModelSpec",
    "PixelCNNError",
    "TensorImageDataset",
]
