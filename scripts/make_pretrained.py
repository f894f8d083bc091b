"""Make the pretrained ``mnist-sample`` model that ships in the package (``pretrained:mnist-sample``).

Usage (by a maintainer; the result is committed, and anyone can rerun it):

    python scripts/make_pretrained.py                 # trains, then writes src/pixelcnn_cli/pretrained/mnist-sample.pt
    python scripts/make_pretrained.py --epochs 2      # quicker, worse
    python scripts/make_pretrained.py --keep-run runs/pretrained   # keep the run folder (curves, grids)

It runs ``pixelcnn train`` on the bundled digits at 2 levels (binarised, the seed's default, so
samples are crisp digits) with the command below, then keeps only what sampling and scoring
need from the best checkpoint (config, spec, weights, that epoch's metrics): no optimiser and
no resume state, about 1.6 MB for the seed's network. It prints the command, the time, the test bits/dim and the
file's size for the README.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "src" / "pixelcnn_cli" / "pretrained" / "mnist-sample.pt"
KEEP = ("config", "spec", "model_options", "plugins", "model_state", "epoch", "step", "best_bits_per_dim", "metrics",
        "ema_decay")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=TARGET)
    parser.add_argument("--keep-run", type=Path, help="train in this folder and keep it [default: a temporary one]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = str(args.keep_run.parent) if args.keep_run else temporary
        name = args.keep_run.name if args.keep_run else "pretrained-mnist-sample"
        command = ["pixelcnn", "train", "--dataset", "mnist-sample", "--color-levels", "2", "--epochs", str(args.epochs),
                   "--lr", "1e-3", "--lr-schedule", "cosine", "--ema", "0.999", "--seed", "0", "--epoch-samples", "0",
                   "--runs-dir", work, "--run-name", name]
        print("$", shlex.join(command), flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pixelcnn_cli", *command[1:]], check=True)
        seconds = time.perf_counter() - started

        from pixelcnn_cli.checkpoint import load_checkpoint, save_checkpoint

        best = load_checkpoint(Path(work) / name / "checkpoints" / "best.pt")
        payload = {key: best[key] for key in KEEP if key in best}
        payload["config"] = {**payload["config"], "output_dir": "runs", "run_name": None}  # not the temporary folder
        save_checkpoint(args.out, payload)
    metrics = payload.get("metrics") or {}
    print(json.dumps({"seconds": round(seconds, 1), "epoch": payload.get("epoch"),
                      "test_bits_per_dim": metrics.get("test_bits_per_dim"),
                      "bytes": args.out.stat().st_size, "file": str(args.out)}, indent=2))


if __name__ == "__main__":
    main()
