"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's own loaders.

torchvision reads (and, with ``download=True``, fetches and checks) the files; we then take
its in-memory ``uint8`` arrays as one tensor per split, so batching costs one index operation.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
import torchvision

from ..contracts import EmptyOptions, ImageData, TensorImageDataset
from ..errors import DataError

_MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


class _TorchvisionSet:
    name: str
    options_model = EmptyOptions
    dataset_class: type
    folder: str  # where torchvision keeps the files, under data_dir
    files: list[str]

    def _open(self, data_dir: Path, train: bool, download: bool):
        quiet = io.StringIO()  # torchvision prints download chatter on stdout
        try:
            with contextlib.redirect_stdout(quiet):
                return self.dataset_class(root=str(data_dir), train=train, download=download)
        except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ...
            where = data_dir / self.folder
            # torchvision puts the cause last ("Error downloading x:\n<urlopen error ...>")
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            reason = lines[-1] if lines else type(error).__name__
            reason = reason.replace("You can use download=True to download it", "pass --download to fetch it")
            how = "download failed" if download else "downloads are off (--no-download)"
            raise DataError(
                f"{self.name}: dataset files not found or unreadable in {where} "
                f"(expected {', '.join(self.files)}); {how}: {reason}. "
                f"Put the files there, or try --dataset mnist-sample, which ships with pixelcnn"
            ) from None

    def _tensors(self, dataset) -> TensorImageDataset:
        data = torch.as_tensor(dataset.data)
        images = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # N x C x H x W
        labels = torch.as_tensor(dataset.targets, dtype=torch.long)
        return TensorImageDataset(images.contiguous(), labels)

    def load(self, data_dir: Path, download: bool, options=None) -> ImageData:
        data_dir = Path(data_dir)
        train = self._open(data_dir, True, download)
        test = self._open(data_dir, False, download)
        train_set, test_set = self._tensors(train), self._tensors(test)
        _, channels, height, width = train_set.images.shape
        return ImageData(channels, height, width, list(train.classes), train_set, test_set)


class MNIST(_TorchvisionSet):
    name = "mnist"
    description = "MNIST handwritten digits, 28x28 grey, 10 classes (torchvision)"
    dataset_class = torchvision.datasets.MNIST
    folder = "MNIST/raw"
    files = _MNIST_FILES


class FashionMNIST(_TorchvisionSet):
    name = "fashionmnist"
    description = "Fashion-MNIST, 28x28 grey, 10 classes (torchvision)"
    dataset_class = torchvision.datasets.FashionMNIST
    folder = "FashionMNIST/raw"
    files = _MNIST_FILES


class CIFAR10(_TorchvisionSet):
    name = "cifar"
    description = "CIFAR-10, 32x32 RGB, 10 classes (torchvision); alias cifar10"
    dataset_class = torchvision.datasets.CIFAR10
    folder = "cifar-10-batches-py"
    files = ["data_batch_1..5", "test_batch", "batches.meta"]
