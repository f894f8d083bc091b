"""The out-of-distribution experiment of Nalisnick et al. 2019 (arXiv 1810.09136) on the digits.

    python benchmarks/ood.py                                  # the shipped model, 1000 pictures a set
    python benchmarks/ood.py -m runs/my-run --count 500 --out /tmp/ood

Does a model trained on the bundled ``mnist-sample`` digits give the digits of its test split a
higher likelihood than pictures of other kinds? Three sets are made offline under ``--out``
(PNG files, read by ``pixelcnn score`` as any user's pictures are: fitted to the model's size,
channels and levels):

* ``letters``: capital letters A-Z drawn white on black, centred, at random sizes, strokes and
  slants: near the digits in kind (pen strokes on a dark ground);
* ``scenes``: the photo-like pictures of ``benchmarks/rgb_scenes.py`` (gradients, shapes, grain);
* ``noise``: every pixel uniform at random.

For each it runs ``pixelcnn score --split test --marginal --compare SET`` (both sets scored as
``-log p(x)`` summed over the classes with a uniform prior, since the other pictures have no
class), writes ``OUT/hist-SET.png`` and prints a table: the mean bits/dim of each set, the
AUROC of calling a picture "not a digit" when its bits/dim is higher (1: told apart perfectly,
0.5: chance, below 0.5: the model finds that set more likely than its own digits), and the share
of the set's pictures that the model finds more likely than the median digit and than 95% of
the digits (from ``pixelcnn score --marginal SET -o OUT/rows-SET.csv``).
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgb_scenes import write_folder as write_scenes  # noqa: E402  (a sibling script)

SETS = ("letters", "scenes", "noise")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def letter(rng: np.random.Generator, size: int = 28) -> Image.Image:
    """One capital letter, white on black, drawn large and reduced (anti-aliased, like the digits)."""
    big = size * 4
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=float(rng.uniform(0.85, 1.05) * big))
    glyph = LETTERS[int(rng.integers(len(LETTERS)))]
    stroke = int(rng.integers(1, 6))
    draw.text((big / 2, big / 2), glyph, fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255)
    canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def write_letters(out: Path, count: int, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        letter(rng).save(out / f"letter-{i:05d}.png")


def write_noise(out: Path, count: int, seed: int, size: int = 28) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(out / f"noise-{i:05d}.png")


def make_set(name: str, out: Path, count: int, seed: int) -> Path:
    folder = out / name
    if folder.exists() and sum(1 for _ in folder.rglob("*.png")) >= count:
        return folder
    if name == "letters":
        write_letters(folder, count, seed)
    elif name == "scenes":
        write_scenes(folder, count, seed=seed)
    else:
        write_noise(folder, count, seed)
    return folder


SUMMARY = re.compile(r"^(?P<name>.+?): (?P<count>\d+) images.*?bits/dim mean (?P<mean>[0-9.]+)", re.M)
AUROC = re.compile(r"AUROC (?P<auroc>[0-9.]+)")


def score(args: list[str], out: Path) -> str:
    """Run ``pixelcnn score`` in ``out`` (so the sets are named by their folders); its output."""
    done = subprocess.run([sys.executable, "-m", "pixelcnn_cli", "score", *args], capture_output=True, text=True, cwd=out)
    if done.returncode != 0:
        raise SystemExit(f"pixelcnn score failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout + done.stderr


def bits_of(rows: Path) -> list[float]:
    with open(rows, newline="", encoding="utf-8") as f:
        return [float(row["bits_per_dim"]) for row in csv.DictReader(f)]


def compare(model: str, folder: Path, out: Path) -> dict:
    """The one command a user runs, then the other set's own rows (``--compare`` keeps only the
    first set's), to count the pictures the model finds more likely than most digits."""
    histogram = f"hist-{folder.name}.png"
    text = score(["-m", model, "--split", "test", "--marginal", "--compare", folder.name, "--histogram", histogram,
                  "-o", "rows-digits.csv"], out)
    summaries = SUMMARY.findall(text)
    if len(summaries) != 2 or not AUROC.search(text):
        raise SystemExit(f"unexpected output of pixelcnn score:\n{text}")
    (_, digit_count, digit_mean), (_, other_count, other_mean) = summaries
    score(["-m", model, "--marginal", folder.name, "-o", f"rows-{folder.name}.csv"], out)
    digit_bits = sorted(bits_of(out / "rows-digits.csv"))
    other_bits = bits_of(out / f"rows-{folder.name}.csv")
    median, low = digit_bits[len(digit_bits) // 2], digit_bits[len(digit_bits) // 20]
    return {"set": folder.name, "digits": int(digit_count), "digits_mean": float(digit_mean),
            "pictures": int(other_count), "pictures_mean": float(other_mean),
            "auroc": float(AUROC.search(text)["auroc"]), "histogram": str(out / histogram),
            "below_digit_median": sum(b < median for b in other_bits) / len(other_bits),
            "below_digit_q05": sum(b < low for b in other_bits) / len(other_bits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model-path", default="pretrained:mnist-sample", help="checkpoint trained on mnist-sample")
    parser.add_argument("--count", type=int, default=1000, help="pictures in each made set")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmark-ood"))
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.model_path.startswith("pretrained:"):
        args.model_path = str(Path(args.model_path).resolve())  # score runs inside --out
    rows = []
    for name in args.sets.split(","):
        if name not in SETS:
            raise SystemExit(f"--sets: unknown {name!r} ({', '.join(SETS)})")
        rows.append(compare(args.model_path, make_set(name, args.out, args.count, args.seed), args.out))
        print(f"{name}: AUROC {rows[-1]['auroc']:.4f}", file=sys.stderr)
    print(f"model {args.model_path}: mnist-sample test digits against pictures made offline, -log p(x) (uniform prior)\n")
    print("| other set | pictures | their bits/dim (mean) | digits' bits/dim (mean) | AUROC "
          "| more likely than the median digit | than 95% of digits | histogram |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['set']} | {row['pictures']} | {row['pictures_mean']:.4f} | {row['digits_mean']:.4f} "
              f"| {row['auroc']:.4f} | {row['below_digit_median']:.1%} | {row['below_digit_q05']:.1%} "
              f"| {Path(row['histogram']).name} |")


if __name__ == "__main__":
    main()
