"""PixelSNAIL (Chen, Mishra, Rohaninejad and Abbeel 2017, arXiv 1712.09763), whole in one package.

* :mod:`.net`: the full-resolution stream of gated resnet blocks and the strictly causal
  self-attention blocks;
* :mod:`.plugin`: the model (network + the discretised logistic mixture of
  :mod:`pixelcnn_cli.models.mixture`, shared with PixelCNN++) and the built-in model plugin ``pixelsnail``.
"""

from .net import PixelSNAILNet
from .plugin import PixelSNAIL, PixelSNAILOptions, PixelSNAILPlugin

__all__ = ["PixelSNAIL", "PixelSNAILNet", "PixelSNAILOptions", "PixelSNAILPlugin"]
