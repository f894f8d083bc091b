"""Write small datasets in their real on-disk formats, so torchvision's own loaders read them offline.

* MNIST / Fashion-MNIST: the IDX files torchvision reads from ``<root>/<folder>/raw/``
  (uncompressed; a big-endian header of two zero bytes, the type byte 0x08 for unsigned bytes,
  the number of dimensions, then one big-endian int32 per dimension, then the bytes).
* CIFAR-10: the Python pickles of ``cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``,
  ``batches.meta``); each batch's ``data`` is a ``uint8`` array ``N x 3072`` holding the red
  plane, then the green plane, then the blue plane, each 32 x 32 in row-major order, with
  ``labels``, ``batch_label`` and ``filenames``; the meta file has ``label_names``. The real files
  were pickled by Python 2, whose ``str`` keys and names come back as ``str`` under
  ``encoding="latin1"`` (how torchvision loads them; the CIFAR site's ``b"data"`` spelling is what
  ``encoding="bytes"`` gives), so the keys and names are written as ``str`` here.

torchvision checks the md5 sums of the CIFAR files against the real data set's; the writer returns
the sums of what it wrote so a test can point torchvision at them (see ``cifar10_md5_lists``).
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
CIFAR_META_FILE = "batches.meta"
CIFAR_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_UBYTE = 0x08


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8, 1 to 3 dimensions) as the bytes of an IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, _UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes(order="C")


def write_idx(path: Path, array: np.ndarray, gzipped: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    if gzipped:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@dataclass
class Split:
    """What was written for one split: ``images`` ``uint8 N x C x H x W``, ``labels`` ``long N``."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass
class Written:
    root: Path
    folder: Path
    train: Split
    test: Split
    files: dict[str, Path] = field(default_factory=dict)


def _digit_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` 28 x 28 uint8 images: a bright random blob on black, like a digit's ink, plus noise."""
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    rows, cols = np.mgrid[0:28, 0:28]
    for i in range(n):
        r, c = rng.integers(8, 20, size=2)
        radius = rng.integers(3, 8)
        ink = (rows - r) ** 2 + (cols - c) ** 2 <= radius**2
        images[i][ink] = rng.integers(128, 256, size=int(ink.sum()))
        noise = rng.random((28, 28)) < 0.05
        images[i][noise] = rng.integers(0, 256, size=int(noise.sum()))
    return images


def write_mnist_idx(root, folder: str = "MNIST", n_train: int = 64, n_test: int = 64, seed: int = 0) -> Written:
    """Write ``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uncompressed).

    Use ``folder="FashionMNIST"`` for Fashion-MNIST (same format). Every label 0..9 occurs in
    each split when it has at least 10 images.
    """
    root = Path(root)
    raw = root / folder / "raw"
    rng = np.random.default_rng(seed)
    splits = {}
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = _digit_like(rng, n)
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        files[f"{prefix}-images-idx3-ubyte"] = write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        files[f"{prefix}-labels-idx1-ubyte"] = write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        splits[prefix] = Split(torch.from_numpy(images).unsqueeze(1).clone(), torch.from_numpy(labels).long())
    return Written(root, raw, splits["train"], splits["t10k"], files)


@dataclass
class CifarWritten(Written):
    label_names: list[str] = field(default_factory=list)
    # the rows exactly as stored in the pickles (N x 3072), to check the pixel order independently
    train_rows: np.ndarray | None = None
    test_rows: np.ndarray | None = None
    md5: dict[str, str] = field(default_factory=dict)


def _md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _cifar_batch(rng: np.random.Generator, n: int, batch_label: str, first_index: int) -> dict:
    rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return {
        "batch_label": batch_label,
        "labels": [int(x) for x in rng.integers(0, 10, size=n)],
        "data": rows,
        "filenames": [f"fixture_{first_index + i:05d}.png" for i in range(n)],
    }


def write_cifar10(root, n_per_batch: int = 10, n_test: int = 14, seed: int = 0,
                  label_names: list[str] | None = None) -> CifarWritten:
    """Write ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` as CIFAR-10 pickles.

    ``5 * n_per_batch`` training images and ``n_test`` test images (64 with the defaults).
    Training image 0 has a known pixel at row 2, column 5: red 10, green 200, blue 77, and
    its transposed position (row 5, column 2) is red 1, green 2, blue 3.
    """
    root = Path(root)
    folder = root / CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    names = list(label_names or CIFAR_LABEL_NAMES)
    rng = np.random.default_rng(seed)
    files: dict[str, Path] = {}

    batches = []
    for i, name in enumerate(CIFAR_TRAIN_FILES):
        batch = _cifar_batch(rng, n_per_batch, f"training batch {i + 1} of 5", i * n_per_batch)
        batches.append((name, batch))
    test = _cifar_batch(rng, n_test, "testing batch 1 of 1", 5 * n_per_batch)
    batches.append((CIFAR_TEST_FILE, test))

    # the known pixel: plane offset (0 red, 1024 green, 2048 blue) + row * 32 + column
    first = batches[0][1]["data"]
    for plane, value in zip((0, 1024, 2048), (10, 200, 77)):
        first[0, plane + 2 * 32 + 5] = value
    for plane, value in zip((0, 1024, 2048), (1, 2, 3)):
        first[0, plane + 5 * 32 + 2] = value

    for name, batch in batches:
        path = folder / name
        with open(path, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        files[name] = path
    meta = {"num_cases_per_batch": n_per_batch, "label_names": names, "num_vis": 3072}
    with open(folder / CIFAR_META_FILE, "wb") as f:
        pickle.dump(meta, f, protocol=2)
    files[CIFAR_META_FILE] = folder / CIFAR_META_FILE

    def split(parts: list[dict]) -> tuple[Split, np.ndarray]:
        rows = np.concatenate([p["data"] for p in parts])
        labels = torch.tensor([label for p in parts for label in p["labels"]], dtype=torch.long)
        images = torch.from_numpy(rows.reshape(-1, 3, 32, 32).copy())
        return Split(images, labels), rows

    train, train_rows = split([b for _, b in batches[:5]])
    test_split, test_rows = split([test])
    return CifarWritten(root, folder, train, test_split, files, names, train_rows, test_rows,
                        {name: _md5(path) for name, path in files.items()})


def cifar10_md5_lists(written: CifarWritten) -> tuple[list[list[str]], list[list[str]], dict[str, str]]:
    """``(train_list, test_list, meta)`` in torchvision's ``CIFAR10`` layout, with the fixture's md5 sums."""
    train_list = [[name, written.md5[name]] for name in CIFAR_TRAIN_FILES]
    test_list = [[CIFAR_TEST_FILE, written.md5[CIFAR_TEST_FILE]]]
    meta = {"filename": CIFAR_META_FILE, "key": "label_names", "md5": written.md5[CIFAR_META_FILE]}
    return train_list, test_list, meta
