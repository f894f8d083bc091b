"""Write a folder of 32x32 RGB pictures, made offline, for the RGB rows of the benchmarks.

    python benchmarks/rgb_scenes.py OUT_DIR [--count 6000] [--seed 0] [--size 32]

Photo-like rather than flat: each picture has a two-colour gradient background with sensor-like
noise, and one anti-aliased object of a random colour, size and place, softly shaded. The
object's kind is the class (one sub-folder each, the layout the ``imagefolder`` plugin reads):
circle, square, triangle, ring, horizontal bars, vertical bars. A model has to learn smooth
colour fields, edges and per-class shapes, and its samples show whether it did.

Train on it with
``--dataset imagefolder --dataset-option root=OUT_DIR`` (10% is held out as the test split).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "ring", "hbars", "vbars")
OVERSAMPLE = 4  # drawn 4x larger, then reduced: anti-aliased edges, as a camera gives


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def picture(kind: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    big = size * OVERSAMPLE
    top, bottom = np.array(_colour(rng), float), np.array(_colour(rng), float)
    t = np.linspace(0.0, 1.0, big)[:, None, None]
    background = (1 - t) * top + t * bottom
    canvas = Image.fromarray(np.broadcast_to(background, (big, big, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    colour = _colour(rng)
    r = rng.uniform(0.22, 0.38) * big
    cx, cy = rng.uniform(r, big - r), rng.uniform(r, big - r)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "triangle":
        turn = rng.uniform(0, 2 * math.pi)
        points = [(cx + r * math.cos(turn + k * 2 * math.pi / 3), cy + r * math.sin(turn + k * 2 * math.pi / 3)) for k in range(3)]
        draw.polygon(points, fill=colour)
    elif kind == "ring":
        width = max(OVERSAMPLE * 2, int(r * 0.35))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=width)
    elif kind in ("hbars", "vbars"):
        bars = int(rng.integers(2, 5))
        period = big / bars
        for k in range(bars):
            a, b = k * period, k * period + period / 2
            draw.rectangle([0, a, big, b] if kind == "hbars" else [a, 0, b, big], fill=colour)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    small = canvas.filter(ImageFilter.GaussianBlur(OVERSAMPLE * 0.4)).resize((size, size), Image.Resampling.LANCZOS)
    # light from one side, and the grain of a small sensor
    pixels = np.asarray(small, float)
    light = 1.0 + 0.15 * np.linspace(-1, 1, size)[None, :, None] * rng.choice([-1, 1])
    pixels = pixels * light + rng.normal(0, 3.0, pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def write_folder(out: Path, count: int, seed: int = 0, size: int = 32) -> None:
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        kind = CLASSES[i % len(CLASSES)]
        picture(kind, rng, size).save(out / kind / f"{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    write_folder(args.out, args.count, args.seed, args.size)
    print(f"wrote {args.count} pictures of {args.size}x{args.size} in {len(CLASSES)} classes to {args.out}")


if __name__ == "__main__":
    main()
