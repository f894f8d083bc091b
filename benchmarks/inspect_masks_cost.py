"""What ``pixelcnn inspect-masks`` costs at each built-in model's default size, grey and RGB.

    python benchmarks/inspect_masks_cost.py                        # gated, pixelcnnpp, classic
    python benchmarks/inspect_masks_cost.py --models pixelcnnpp --channels 3 --json
    python benchmarks/inspect_masks_cost.py --extra=--size=23      # any further option, to every run

Measurement only. Each check runs as its own ``python -m pixelcnn_cli inspect-masks --model NAME
--channels C`` (the model's own default options, on the CPU); its wall time and its peak resident
memory (``ru_maxrss`` of that child alone, from ``os.wait4``) are printed with the image the
check ran on and its verdict line. The threads are torch's default (every core).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("gated", "pixelcnnpp", "classic")


def measure(model: str, channels: int, extra: list[str], timeout: float) -> dict:
    command = [sys.executable, "-m", "pixelcnn_cli", "inspect-masks", "--model", model, "--channels", str(channels),
               *extra]
    paths = [ROOT / "src", ROOT / "plugins" / "pixelcnn-classic" / "src", ROOT / "plugins" / "pixelcnn-imagefolder" / "src"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "COLUMNS": "200"}
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        timer = threading.Timer(timeout, child.kill)
        timer.start()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
        seconds = time.perf_counter() - start
        timer.cancel()
        log.seek(0)
        output = log.read()
    image = re.search(r"on a (\d+x\d+x\d+) image", output)
    verdict = [line.strip() for line in output.splitlines() if re.match(r"\s*(causal|NOT causal|blind spot)", line)]
    return {"model": model, "channels": channels, "rc": os.waitstatus_to_exitcode(status), "seconds": round(seconds, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024), "image": image.group(1) if image else None,
            "verdict": verdict[-1][:100] if verdict else output[-300:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--channels", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--extra", action="append", default=[], help="further inspect-masks options, e.g. --extra=--size=23")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run is stopped")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for model in args.models:
        for channels in args.channels:
            rows.append(measure(model, channels, args.extra, args.timeout))
            if not args.json:
                r = rows[-1]
                print(f"{r['model']:<11} channels {r['channels']}  {r['image'] or '?':<9} {r['seconds']:>7.1f} s  "
                      f"peak {r['peak_rss_mib']} MiB  rc {r['rc']}  {r['verdict']}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
