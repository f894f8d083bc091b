"""Test bits/dim after the same wall-clock budget: the seed defaults against the CPU presets.

    python benchmarks/presets.py                          # grey and RGB, 10 minutes each run
    python benchmarks/presets.py --minutes 3 --data grey  # a quicker look
    python benchmarks/presets.py --data custom --dataset imagefolder --dataset-option root=~/pics
    python benchmarks/presets.py --configs seed,gated-cpu --json

Measurement only; it takes (runs x --minutes) of training plus the evaluations. Every run is a
real ``pixelcnn train`` at 256 levels with ``--max-minutes`` (only training steps count: the
test-set evaluation at each epoch end and at the stop does not), ``--seed 0``, and the whole
machine to itself, one run after the other. Rows:

* ``seed``: the gated PixelCNN at the seed's defaults (30 maps, 6 layers, 7x7, a 10-map output
  block, lr 1e-4 on the cyclic schedule);
* one row per preset named in ``--configs`` (default: ``gated-cpu`` and ``pixelcnnpp-cpu``); a
  config may add model options after ``+``, as ``pixelcnnpp-cpu+weight_norm=true`` (several:
  ``+a=1+b=2``), to compare a preset with and without an option side by side.

Data: ``grey`` is the bundled ``mnist-sample`` digits (1x28x28; 9,000 train / 1,000 test);
``rgb`` is 6,000 photo-like 3x32x32 pictures in 6 classes made offline by
``benchmarks/rgb_scenes.py`` (written once under ``--out``; 600 held out); ``custom`` is any
``--dataset`` with ``--dataset-option``. For each run it prints training images/s, the images
trained in the budget, the test bits/dim at the stop and its ratio to the seed row's, and writes
a grid of 36 samples (random classes, ``--seed 0``) to ``OUT/samples-DATA-CONFIG.png``: look at them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgb_scenes import write_folder  # noqa: E402  (a sibling script)

SEED_ROW = "seed"


def run_cli(args: list[str], log: Path) -> None:
    with open(log, "a", encoding="utf-8") as out:
        done = subprocess.run([sys.executable, "-m", "pixelcnn_cli", *args], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"pixelcnn {args[0]} failed (exit {done.returncode}); see {log}")


def measure(data_flags: list[str], config: str, minutes: float, out: Path, tag: str) -> dict:
    name = f"{tag}-{config}"
    base, *options = config.split("+")
    preset = [] if base == SEED_ROW else ["--preset", base]
    for option in options:
        preset += ["--model-option", option]
    log = out / f"{name}.log"
    log.unlink(missing_ok=True)
    started = time.perf_counter()
    run_cli(["train", *data_flags, *preset, "--color-levels", "256", "--epochs", "10000", "--max-minutes", str(minutes),
             "--seed", "0", "--epoch-samples", "0", "--runs-dir", str(out / "runs"), "--run-name", name, "--overwrite"], log)
    wall = time.perf_counter() - started
    run = out / "runs" / name
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    images = sum(e["train_images"] for e in epochs)
    seconds = sum(e["train_seconds"] for e in epochs)
    grid = out / f"samples-{name}.png"
    run_cli(["sample", "-m", str(run / "checkpoints" / "last.pt"), "-c", "36", "--seed", "0", "--output", str(grid)], log)
    return {"data": tag, "config": config, "images_per_second": images / seconds, "images": images,
            "train_seconds": seconds, "epochs": len(epochs), "test_bits_per_dim": epochs[-1]["test_bits_per_dim"],
            "best_test_bits_per_dim": min(e["test_bits_per_dim"] for e in epochs), "wall_seconds": wall,
            "samples": str(grid)}


def data_sets(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    chosen = []
    for tag in args.data.split(","):
        if tag == "grey":
            chosen.append(("grey", ["--dataset", "mnist-sample"]))
        elif tag == "rgb":
            root = args.out / "scenes"
            if not root.exists():
                write_folder(root, 6000, seed=0)
            chosen.append(("rgb", ["--dataset", "imagefolder", "--dataset-option", f"root={root}"]))
        elif tag == "custom":
            if not args.dataset:
                raise SystemExit("--data custom needs --dataset (and any --dataset-option)")
            flags = ["--dataset", args.dataset]
            for option in args.dataset_option:
                flags += ["--dataset-option", option]
            chosen.append((args.dataset, flags))
        else:
            raise SystemExit(f"--data: unknown {tag!r} (grey, rgb, custom)")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of each run")
    parser.add_argument("--data", default="grey,rgb", help="grey, rgb and/or custom, comma-separated")
    parser.add_argument("--configs", default="seed,gated-cpu,pixelcnnpp-cpu", help="seed and/or preset names, each with optional +key=value model options")
    parser.add_argument("--dataset", help="with --data custom: the dataset plugin")
    parser.add_argument("--dataset-option", action="append", default=[], help="with --data custom (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-presets"), help="runs, sample grids and logs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for tag, flags in data_sets(args):
        for config in args.configs.split(","):
            row = measure(flags, config, args.minutes, args.out, tag)
            rows.append(row)
            print(f"{tag} {config}: {row['test_bits_per_dim']:.4f} bits/dim, {row['images_per_second']:.1f} img/s", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"test bits/dim at 256 levels after {args.minutes:g} minutes of training steps each (seed 0)\n")
    print("| data | config | train img/s | images trained | epochs | test bits/dim | vs seed | samples |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        seed = next((r for r in rows if r["data"] == row["data"] and r["config"] == SEED_ROW), None)
        ratio = f"{row['test_bits_per_dim'] / seed['test_bits_per_dim']:.2f}x" if seed else "-"
        print(f"| {row['data']} | {row['config']} | {row['images_per_second']:.1f} | {row['images']:,} | {row['epochs']} "
              f"| {row['test_bits_per_dim']:.4f} | {ratio} | {Path(row['samples']).name} |")


if __name__ == "__main__":
    main()
