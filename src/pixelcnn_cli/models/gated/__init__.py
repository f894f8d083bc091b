"""The Gated PixelCNN (van den Oord et al. 2016, arXiv 1606.05328), whole in one package.

* :mod:`.masks`: the A/B masks as pure functions (raster order, then R -> G -> B);
* :mod:`.layers`: masked convolutions, the vertical and horizontal stacks, the gated block, the head;
* :mod:`.incremental`: the cached per-layer state the fast sampler steps pixel by pixel;
* :mod:`.plugin`: the network and the built-in model plugin ``gated``.
"""

from .plugin import GatedPixelCNN, GatedPixelCNNPlugin, check_architecture

__all__ = ["GatedPixelCNN", "GatedPixelCNNPlugin", "check_architecture"]
