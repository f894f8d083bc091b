"""What a training step costs for each family at 32x32: time and memory per image, at each
family's CPU preset and paper size.

    python benchmarks/family_cost.py                         # the six presets, RGB 32x32, 256 levels
    python benchmarks/family_cost.py --presets pixelsnail-cpu,pixelcnnpp-cpu --batch-size 16 --steps 5
    python benchmarks/family_cost.py --json

Measurement only. Each preset runs in its own process (torch's default threads, on the CPU): the
preset's model for RGB 32x32 at 256 levels (class-conditional with 10 classes unless the preset is
unconditional), its optimiser settings' Adam, random images, batches of ``--batch-size`` (the
same for every preset, so the figures are per image of one batch size), ``--warmup`` untimed
steps, then ``--steps`` timed steps of forward, likelihood, backward and Adam, in train mode
(dropout as the preset says). Memory: the process's peak resident size (Linux ``VmHWM``, which
starts anew at exec) once the model and a batch exist, and after the steps; the difference is
what training adds (activations kept for the backward pass, gradients, Adam's two moments).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("gated-cpu", "pixelcnnpp-cpu", "pixelsnail-cpu", "gated-paper-cifar", "pixelcnnpp-paper-cifar",
           "pixelsnail-paper-cifar")

CHILD = textwrap.dedent("""
    import json, sys, time, torch
    from pixelcnn_cli.building import build_model, place_model
    from pixelcnn_cli.config import TrainConfig
    from pixelcnn_cli.contracts import ModelSpec
    from pixelcnn_cli.data.quantize import levels_to_input
    from pixelcnn_cli.likelihood import nll_per_dim
    from pixelcnn_cli.presets import PRESETS

    def peak_mib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

    name, batch, warmup, steps = sys.argv[1], *(int(a) for a in sys.argv[2:5])
    values = {k: v for k, v in PRESETS[name].values.items() if k not in ("dataset", "max_steps")}
    config = TrainConfig(**values)
    classes = 0 if config.unconditional else 10
    spec = ModelSpec(3, 32, 32, 256, classes)
    torch.manual_seed(0)
    model, _ = build_model(config, spec)
    model = place_model(model, torch.device("cpu")).train()
    adam = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=tuple(config.adam_betas))
    levels = torch.randint(256, (batch, 3, 32, 32))
    x = levels_to_input(levels, 256).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(10, (batch,)) if classes else None
    built = peak_mib()

    def step():
        loss = nll_per_dim(model, model(x, labels), x, levels).mean()
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    print(json.dumps({"preset": name, "parameters": sum(p.numel() for p in model.parameters()),
                      "batch_size": batch, "steps": steps, "seconds_per_step": seconds,
                      "ms_per_image": 1000 * seconds / batch, "images_per_second": batch / seconds,
                      "peak_mib_built": built, "peak_mib": peak_mib(),
                      "training_mib_per_image": (peak_mib() - built) / batch}))
""")


def measure(preset: str, batch: int, warmup: int, steps: int, timeout: float) -> dict:
    paths = [ROOT / "src", ROOT / "plugins" / "pixelcnn-classic" / "src", ROOT / "plugins" / "pixelcnn-imagefolder" / "src"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, preset, str(batch), str(warmup), str(steps)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"preset": preset, "error": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        return {"preset": preset, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names [default: all six]")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step, every preset [default: 8]")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first [default: 1]")
    parser.add_argument("--steps", type=int, default=3, help="timed steps [default: 3]")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per preset [default: 900]")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = []
    for preset in args.presets.split(","):
        if not args.json:
            print(f"... {preset}", file=sys.stderr, flush=True)
        rows.append(measure(preset, args.batch_size, args.warmup, args.steps, args.timeout))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"training step at RGB 32x32, 256 levels, batch {args.batch_size}, CPU, {os.cpu_count()} cores")
    print(f"{'preset':24} {'parameters':>11} {'ms/image':>9} {'img/s':>7} {'MiB/image':>10} {'peak MiB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['preset']:24} failed: {r['error']}")
            continue
        print(f"{r['preset']:24} {r['parameters'] / 1e6:>10.2f}M {r['ms_per_image']:>9.1f} {r['images_per_second']:>7.1f} "
              f"{r['training_mib_per_image']:>10.1f} {r['peak_mib']:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
