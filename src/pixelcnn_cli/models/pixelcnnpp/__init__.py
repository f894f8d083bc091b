"""PixelCNN++ (Salimans et al. 2017, arXiv 1701.05517), whole in one package.

* :mod:`.net`: the two-stream U-net of shifted convolutions and gated resnet blocks;
* its likelihood, the discretised logistic mixture, is :mod:`pixelcnn_cli.models.mixture` (PixelSNAIL's too);
* :mod:`.incremental`: the cached state that computes every cell once per sampling run;
* :mod:`.plugin`: the model (network + likelihood) and the built-in model plugin ``pixelcnnpp``.
"""

from .net import PixelCNNPPNet
from .plugin import PixelCNNPP, PixelCNNPPOptions, PixelCNNPPPlugin

__all__ = ["PixelCNNPP", "PixelCNNPPNet", "PixelCNNPPOptions", "PixelCNNPPPlugin"]
