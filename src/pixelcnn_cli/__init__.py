"""pixelcnn: the PixelCNN family (Gated PixelCNN, PixelCNN++, PixelSNAIL) as one command-line suite and a small library.

Commands: ``pixelcnn train``, ``sample``, ``eval``, ``score``, ``runs``, ``plot``,
``inspect-masks`` and ``plugins`` (:mod:`pixelcnn_cli.cli`). Everything a plugin author or a
notebook may rely on is importable from here, and only that is public API (the README's plugin
guide lists it): the plugin contract, the errors a plugin raises, the masked building blocks of
the PixelCNN family, the fp32 head helper and the picture reader every command uses.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("pixelcnn-cli")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

from .errors import CheckpointError, ConfigError, DataError, PixelCNNError, PluginError  # noqa: E402

# The names below need torch; each is imported on first use, so that `pixelcnn --help` and shell
# completion answer without loading PyTorch (PEP 562). Name -> the module that defines it.
_LAZY = {
    **dict.fromkeys(
        ("DatasetPlugin", "EmptyOptions", "ImageData", "ModelPlugin", "ModelSpec", "TensorImageDataset",
         "IncrementalState", "ColourwiseIncrementalState", "PixelOutputState", "SupportsIncremental", "SupportsDataInit"),
        ".contracts",
    ),
    **dict.fromkeys(("MaskedConv2d", "masked_1x1", "OutputHead"), ".models.gated.layers"),
    **dict.fromkeys(("conv_mask", "channel_groups"), ".models.gated.masks"),
    **dict.fromkeys(("read_picture", "PictureError", "PICTURE_EXTENSIONS"), ".images"),
    **dict.fromkeys(("input_codes", "CodeEmbedding"), ".models.codes"),
    "in_fp32": ".autocast",
}


if TYPE_CHECKING:
    from .contracts import (
        ColourwiseIncrementalState,
        DatasetPlugin,
        EmptyOptions,
        ImageData,
        IncrementalState,
        ModelPlugin,
        ModelSpec,
        PixelOutputState,
        SupportsDataInit,
        SupportsIncremental,
        TensorImageDataset,
    )
    from .autocast import in_fp32
    from .images import PICTURE_EXTENSIONS, PictureError, read_picture
    from .models.gated.layers import MaskedConv2d, OutputHead, masked_1x1
    from .models.gated.masks import channel_groups, conv_mask
    from .models.codes import CodeEmbedding, input_codes


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    # the plugin contract
    "DatasetPlugin", "ImageData", "TensorImageDataset", "ModelPlugin", "ModelSpec", "EmptyOptions",
    "IncrementalState", "ColourwiseIncrementalState", "PixelOutputState", "SupportsIncremental", "SupportsDataInit",
    # errors: a plugin raises these for a one-line message and a non-zero exit
    "PixelCNNError", "ConfigError", "DataError", "PluginError", "CheckpointError",
    # masked building blocks (the gated model's, for masked model plugins)
    "MaskedConv2d", "masked_1x1", "OutputHead", "conv_mask", "channel_groups",
    # codes (spec.codes): the integers back from the input scale, and their learnt embedding
    "input_codes", "CodeEmbedding",
    # precision: a head that stays fp32 under bf16 autocast
    "in_fp32",
    # pictures, read as every command reads them
    "read_picture", "PictureError", "PICTURE_EXTENSIONS",
]
