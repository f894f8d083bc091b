"""A two-level tokeniser for the bundled digits, so that priors over codes, a conditioned one
included, can be tried offline in minutes.

    python examples/digit_codes.py fit digit-codes/            # k-means over patches -> two levels of code maps
    pixelcnn train --dataset codes --dataset-option path=digit-codes/train.npz \\
        --dataset-option test_path=digit-codes/test.npz --epochs 5 --run-name digit-prior
    pixelcnn sample -m runs/digit-prior --label 3 -c 16 -o digit-codes/threes.png
    python examples/digit_codes.py decode digit-codes/threes.npy --codebook digit-codes/codebook.npy

``fit`` cuts every 28x28 digit of ``mnist-sample`` into 49 patches of 4x4 pixels, fits ``K``
centroids to the training patches (k-means: k-means++ seeding, then Lloyd's iterations), and
writes each digit as the 7x7 map of its patches' nearest centroids: ``train.npz`` and ``test.npz``
(``codes``, ``labels``, ``num_codes``, the layout ``--dataset codes`` reads), ``codebook.npy`` (the
centroids) and ``reconstructions.png`` (test digits above their decoded maps). ``decode`` turns
maps (``pixelcnn sample``'s ``.npy``) back into pictures: each code becomes its centroid patch.

The second level is what the top one misses: the residual (the digit minus its decoded top map)
cut into 2x2 patches, quantised by a codebook of its own into a 14x14 map per digit, written as
``bottom-train.npz`` and ``bottom-test.npz`` with the top map as each map's ``condition`` (the
hierarchical prior of VQ-VAE-2, whose bottom prior reads the top map), and
``bottom-codebook.npy``. ``decode --bottom MAPS.npy`` adds the decoded bottom maps to the top ones.

Why k-means over patches, not a small VQ-VAE: it is what a VQ-VAE's quantiser does to its
encoder's outputs, with the identity for encoder and decoder, so the maps are real VQ code maps
(a codebook, nearest-neighbour assignment, unordered codes) without a network to train; it fits
in seconds, its result depends only on ``--seed``, and decoding is a lookup, so what a sample
looks like is what the prior drew, not what a decoder made of it. The price: a patch's code
cannot blend its neighbours, so decoded digits are blockier than a VQ-VAE's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixelcnn_cli import registry

PATCH = 4  # 28 = 7 x 4: a digit is a 7x7 map of top codes
FINE = 2  # 28 = 14 x 2: its residual a 14x14 map of bottom codes


def patches(images: torch.Tensor, size: int = PATCH) -> torch.Tensor:
    """``N x 28 x 28`` pixels -> ``N x 28/size x 28/size x size*size`` patches."""
    n, h, w = images.shape
    return images.reshape(n, h // size, size, w // size, size).permute(0, 1, 3, 2, 4).reshape(n, h // size, w // size, -1)


def unpatch(cells: torch.Tensor, size: int = PATCH) -> torch.Tensor:
    """``N x rows x cols x size*size`` patches -> ``N x rows*size x cols*size`` pixels."""
    n, rows, cols, _ = cells.shape
    return cells.reshape(n, rows, cols, size, size).permute(0, 1, 3, 2, 4).reshape(n, rows * size, cols * size)


def quantise(images: torch.Tensor, centroids: torch.Tensor, size: int) -> torch.Tensor:
    """Each ``size x size`` patch of ``images`` as its nearest centroid's code: ``N x rows x cols``."""
    cells = patches(images, size)
    return nearest(cells.reshape(-1, size * size), centroids).reshape(cells.shape[:3])


def nearest(points: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """The index of each point's nearest centroid (squared distance), a chunk of points at a time."""
    out = torch.empty(len(points), dtype=torch.long)
    for start in range(0, len(points), chunk):
        out[start:start + chunk] = torch.cdist(points[start:start + chunk], centroids).argmin(dim=1)
    return out


def kmeans(points: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` centroids of ``points`` (``P x D``): k-means++ seeding on a subsample, then Lloyd's
    iterations on all points; a centroid left with no point moves to the point farthest from its own."""
    pool = points[torch.randperm(len(points), generator=generator)[:20000]]
    centroids = pool[torch.randint(len(pool), (1,), generator=generator)]
    for _ in range(1, k):  # each next seed drawn with probability proportional to its squared distance
        distance = torch.cdist(pool, centroids).min(dim=1).values.square()
        centroids = torch.cat([centroids, pool[torch.multinomial(distance + 1e-12, 1, generator=generator)]])
    for _ in range(iterations):
        assigned = nearest(points, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assigned, points)
        counts = torch.bincount(assigned, minlength=k)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            far = (points - centroids[assigned]).square().sum(1).topk(int(empty.sum())).indices
            centroids[empty] = points[far]
    return centroids


def digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled digits of ``split``: pixels ``N x 28 x 28`` in [0, 1] and labels ``N``."""
    data = registry.datasets.get("mnist-sample").load(Path("."), False, None)
    dataset = data.train if split == "train" else data.test
    return dataset.images[:, 0].float() / 255, dataset.labels


def save_grid(pictures: torch.Tensor, path: Path, columns: int = 8) -> None:
    """``N x 28 x 28`` pixels in [0, 1] as one grey PNG, ``columns`` a row, 2-pixel gaps."""
    n, h, w = pictures.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    canvas = np.full((rows * (h + 2) + 2, columns * (w + 2) + 2), 128, np.uint8)
    for i, picture in enumerate(pictures):
        r, c = divmod(i, columns)
        canvas[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + c * (w + 2):2 + c * (w + 2) + w] = (picture.clamp(0, 1) * 255).round().byte().numpy()
    Image.fromarray(canvas).resize((canvas.shape[1] * 3, canvas.shape[0] * 3), Image.NEAREST).save(path)


def fit(folder: Path, k: int, bottom_k: int, iterations: int, seed: int, limit: int | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    splits = {name: digits(name) for name in ("train", "test")}
    if limit:
        splits = {name: (images[:limit], labels[:limit]) for name, (images, labels) in splits.items()}
    train = splits["train"][0]
    centroids = kmeans(patches(train).reshape(-1, PATCH * PATCH), k, iterations, generator)
    residual = train - unpatch(centroids[quantise(train, centroids, PATCH)])
    fine = kmeans(patches(residual, FINE).reshape(-1, FINE * FINE), bottom_k, iterations, generator)
    np.save(folder / "codebook.npy", centroids.numpy())
    np.save(folder / "bottom-codebook.npy", fine.numpy())
    for name, (images, labels) in splits.items():
        top = quantise(images, centroids, PATCH)
        coarse = unpatch(centroids[top])
        bottom = quantise(images - coarse, fine, FINE)
        np.savez(folder / f"{name}.npz", codes=top.numpy().astype(np.int16), labels=labels.numpy(), num_codes=np.array(k))
        np.savez(folder / f"bottom-{name}.npz", codes=bottom.numpy().astype(np.int16), labels=labels.numpy(),
                 num_codes=np.array(bottom_k), condition=top.numpy().astype(np.int16), condition_codes=np.array(k))
        error = (coarse - images).square().mean().item()
        both = (coarse + unpatch(fine[bottom], FINE) - images).square().mean().item()
        print(f"{name}: {len(images)} digits -> {tuple(top.shape[1:])} maps of {k} codes, decoded mean squared error "
              f"{error:.4f} (pixels in [0, 1]) -> {folder / (name + '.npz')}; with the {tuple(bottom.shape[1:])} "
              f"maps of {bottom_k} codes of its residual {both:.4f} -> {folder / ('bottom-' + name + '.npz')}")
    test_images = splits["test"][0][:16]
    decoded = unpatch(centroids[quantise(test_images, centroids, PATCH)])
    refined = decoded + unpatch(fine[quantise(test_images - decoded, fine, FINE)], FINE)
    rows = [part for half in (slice(0, 8), slice(8, 16)) for part in (test_images[half], decoded[half], refined[half])]
    save_grid(torch.cat(rows), folder / "reconstructions.png")
    print(f"wrote {folder / 'codebook.npy'}, {folder / 'bottom-codebook.npy'} and {folder / 'reconstructions.png'} "
          "(rows: digits, their top maps decoded, with their bottom maps)")


def read_maps(path: Path, codebook: torch.Tensor, side: int) -> torch.Tensor:
    maps = torch.from_numpy(np.load(path).astype(np.int64))
    if maps.ndim != 3 or tuple(maps.shape[1:]) != (side, side) or maps.min() < 0 or maps.max() >= len(codebook):
        raise SystemExit(f"error: {path} must hold N x {side} x {side} codes in 0..{len(codebook) - 1} (the codebook's)")
    return maps


def decode(maps_path: Path, codebook_path: Path, output: Path | None, bottom_path: Path | None = None,
           bottom_codebook_path: Path | None = None) -> None:
    centroids = torch.from_numpy(np.load(codebook_path))
    pictures = unpatch(centroids[read_maps(maps_path, centroids, 28 // PATCH)])
    if bottom_path is not None:
        fine = torch.from_numpy(np.load(bottom_codebook_path or codebook_path.with_name("bottom-codebook.npy")))
        bottom = read_maps(bottom_path, fine, 28 // FINE)
        if len(bottom) != len(pictures):
            raise SystemExit(f"error: {bottom_path} holds {len(bottom)} maps for {len(pictures)} top maps")
        pictures = pictures + unpatch(fine[bottom], FINE)
    output = output or (bottom_path or maps_path).with_name((bottom_path or maps_path).stem + "-decoded.png")
    save_grid(pictures, output)
    print(f"decoded {len(pictures)} maps{' with their bottom maps' if bottom_path is not None else ''} to {output}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fitting = commands.add_parser("fit", help="fit the codebooks and write the code maps of both levels")
    fitting.add_argument("folder", type=Path)
    fitting.add_argument("--codes", type=int, default=64, help="K, the top codebook's size (default 64)")
    fitting.add_argument("--bottom-codes", type=int, default=64, help="the bottom codebook's size (default 64)")
    fitting.add_argument("--iterations", type=int, default=20, help="Lloyd's iterations (default 20)")
    fitting.add_argument("--seed", type=int, default=0)
    fitting.add_argument("--limit", type=int, default=None, help="only the first N digits of each split (a quick try)")
    decoding = commands.add_parser("decode", help="maps (.npy) -> pictures (.png)")
    decoding.add_argument("maps", type=Path, help="top maps, N x 7 x 7")
    decoding.add_argument("--codebook", type=Path, required=True)
    decoding.add_argument("--bottom", type=Path, default=None, help="their bottom maps, N x 14 x 14, added to them")
    decoding.add_argument("--bottom-codebook", type=Path, default=None, help="[default: bottom-codebook.npy beside --codebook]")
    decoding.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "fit":
        for flag, value in (("--codes", args.codes), ("--bottom-codes", args.bottom_codes)):
            if not 2 <= value <= 4096:
                parser.error(f"{flag} must be between 2 and 4096")
        fit(args.folder, args.codes, args.bottom_codes, args.iterations, args.seed, args.limit)
    else:
        decode(args.maps, args.codebook, args.output, args.bottom, args.bottom_codebook)
    return 0


if __name__ == "__main__":
    sys.exit(main())
