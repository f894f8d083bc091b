"""pixelcnn: the Gated PixelCNN as a command-line suite and a small library.

What a plugin author or a notebook needs is importable from here.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pixelcnn-cli")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

from .contracts import (  # noqa: E402
    DatasetPlugin,
    EmptyOptions,
    ImageData,
    ModelPlugin,
    ModelSpec,
    TensorImageDataset,
)
from .errors import PixelCNNError  # noqa: E402

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
