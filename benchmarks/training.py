"""Training and evaluation speed, and where a training step spends its time.

    python benchmarks/training.py                 # a table
    python benchmarks/training.py --json          # the same as JSON
    python benchmarks/training.py --no-trainer    # the phase split only
    python benchmarks/training.py --preset pixelcnnpp-cpu --data rgb --no-trainer   # a preset's step, RGB 32x32
    python benchmarks/training.py --preset pixelcnnpp-cpu --data rgb --no-trainer --against /tmp/old/src --rounds 5

Measurement only. The step is the training loop's own work, timed phase by phase on the
seed's default model (30 feature maps, 6 gated layers, 7x7 kernels, 2 levels, 10 classes) with
batches of 32 grey 28x28 ``mnist-sample`` digits (bundled, no download):

* **data**: the next batch from the DataLoader, moved to the device, quantised to levels and
  scaled to the model's input;
* **forward**: ``model(x, labels)``;
* **loss**: cross-entropy over levels;
* **backward**: ``loss.backward()``;
* **optimiser**: ``zero_grad``, gradient clipping (max norm 1), the finite check, the fused Adam
  step that skips a bad step on the device (lr 1e-4, weight decay 1e-4) and setting the next
  step's rate.

``--preset NAME`` times that preset's model, batch size and optimiser settings instead (its
likelihood as the loss: the mixture's for PixelCNN++ and PixelSNAIL), at 256 levels;
``--data rgb`` feeds random 32x32 RGB pictures (a step's time does not depend on what they
show) instead of the 28x28 digits.

``--against SRC`` compares with other code side by side in one run: the split is timed in
``--rounds`` pairs of fresh processes, alternating this checkout's ``src/`` and ``SRC`` (another
checkout's ``src/``, e.g. a ``git worktree`` of an older commit), and the medians and their
ratio are printed, so that a slower or busier machine moves both alike. Only training is
timed there (``--no-eval``), so code from before the evaluation API took a ``ModelSpec`` (up to
PixelSNAIL's arrival) can be timed too.

The phases are timed with a device sync between them (that is what timing them needs); the
real loop waits for the device only every ``--log-every`` steps. The trainer runs show what
that is worth: ``pixelcnn train`` at ``--log-every 1`` (the host reads the loss and the NaN flag
after every step, as the loop once did) against ``--log-every 20`` (the GPU default). On the
CPU the two are the same, since CPU work is never queued ahead; on a GPU the gap is the time
the GPU sat idle waiting for the host.

Evaluation images/s is the forward pass and the NLL terms under ``torch.no_grad`` (what
``pixelcnn eval`` does per batch). With ``--trainer`` (the default) a short real
``pixelcnn train`` run is timed as well and its own images/s reported, as a cross-check of
the phase sum (it includes the per-batch callbacks and bookkeeping the split leaves out).

``--torchrun N`` launches those runs as ``torchrun --standalone --nproc-per-node N`` (DDP, Gloo on
the CPU; ``--batch-size`` per process, so the images/s is of all N together) and counts PyTorch's
"Grad strides do not match bucket view strides" warnings in their output. To compare with older
code side by side, run this script with ``PYTHONPATH`` at the older tree's ``src/``, alternating:
the runs are subprocesses and import what ``PYTHONPATH`` says.

    python benchmarks/training.py --no-split --torchrun 2 --log-every 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import pixelcnn_cli
from pixelcnn_cli.building import build_data, build_model, place_model
from pixelcnn_cli.config import ArchitectureConfig, TrainConfig
from pixelcnn_cli.contracts import ImageData, ModelSpec, TensorImageDataset
from pixelcnn_cli.data.batches import make_loader
from pixelcnn_cli.data.quantize import levels_to_input, to_levels
from pixelcnn_cli.evaluation import nll_terms
from pixelcnn_cli.likelihood import nll_per_dim
from pixelcnn_cli.models.gated import GatedPixelCNN
from pixelcnn_cli.presets import PRESETS
from pixelcnn_cli.training.optimizer import guarded_step, make_adam
from pixelcnn_cli.training.schedules import lr_factor

PHASES = ("data", "forward", "loss", "backward", "optimiser")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forever(loader):
    while True:
        yield from loader


def random_rgb(count: int = 512, seed: int = 0) -> ImageData:
    """Random 32x32 RGB pictures in 10 classes: a training step's time does not depend on their content."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(256, (count, 3, 32, 32), generator=generator, dtype=torch.uint8)
    labels = torch.randint(10, (count,), generator=generator)
    classes = [str(k) for k in range(10)]
    return ImageData(3, 32, 32, classes, TensorImageDataset(images, labels), TensorImageDataset(images[:64], labels[:64]))


def make_model(config: TrainConfig | None, spec: ModelSpec, device: torch.device) -> nn.Module:
    """The preset's model (``config``), or the seed's default one; seeded, placed as training places it."""
    torch.manual_seed(0)
    model = build_model(config, spec)[0] if config else GatedPixelCNN(spec, ArchitectureConfig())
    return place_model(model, device)


def measure_training(data, spec, device, batch_size: int, steps: int, warmup: int,
                     config: TrainConfig | None = None) -> dict:
    model = make_model(config, spec, device)
    model.train()
    lr, decay = (config.learning_rate, config.weight_decay) if config else (1e-4, 1e-4)
    max_norm = config.max_norm if config else 1.0
    betas = tuple(config.adam_betas) if config else (0.9, 0.999)
    optimizer = make_adam(model.parameters(), lr, decay, device, betas)  # as the loop makes it
    loader = forever(make_loader(data.train, batch_size, True, 0, 0, device.type == "cuda"))
    totals = dict.fromkeys(PHASES, 0.0)
    images = 0
    for step in range(warmup + steps):
        marks = [time.perf_counter()]
        batch, labels = next(loader)
        batch = batch.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        levels = to_levels(batch, spec.color_levels)
        x = levels_to_input(levels, spec.color_levels)
        sync(device)
        marks.append(time.perf_counter())
        output = model(x, labels)
        sync(device)
        marks.append(time.perf_counter())
        loss = nll_per_dim(model, output, x, levels).mean()  # the loop's loss: cross-entropy or the model's own
        sync(device)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)  # as the loop: before backward (counted as optimiser)
        zeroed = time.perf_counter()
        loss.backward()
        sync(device)
        marks.append(time.perf_counter())
        finite = torch.isfinite(loss.detach())
        if max_norm > 0:
            finite = finite & torch.isfinite(nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        guarded_step(optimizer, ~finite)
        for group in optimizer.param_groups:  # as the loop: the next step's rate, from the step number
            group["lr"] = lr * lr_factor("constant", step + 1, warmup + steps, 0)
        sync(device)
        marks.append(time.perf_counter())
        spent = [end - start for start, end in zip(marks, marks[1:])]
        zero_grad = zeroed - marks[3]  # from the backward span to the optimiser's
        spent[3] -= zero_grad
        spent[4] += zero_grad
        if step >= warmup:
            images += batch.shape[0]
            for phase, seconds in zip(PHASES, spent):
                totals[phase] += seconds
    seconds = sum(totals.values())
    return {
        "batch_size": batch_size,
        "steps": steps,
        "images_per_second": images / seconds,
        "seconds_per_step": seconds / steps,
        "phase_seconds_per_step": {p: totals[p] / steps for p in PHASES},
        "phase_share": {p: totals[p] / seconds for p in PHASES},
    }


def measure_eval(data, spec, device, batch_size: int, batches: int, config: TrainConfig | None = None) -> dict:
    model = make_model(config, spec, device).eval()
    loader = forever(make_loader(data.test, batch_size, False))
    images, seconds = 0, 0.0
    with torch.no_grad():
        for i in range(batches + 1):
            batch, labels = next(loader)
            sync(device)
            started = time.perf_counter()
            nll_terms(model, batch.to(device), labels.to(device), spec).sum().item()
            sync(device)
            if i:  # the first batch warms up
                images += batch.shape[0]
                seconds += time.perf_counter() - started
    return {"batch_size": batch_size, "batches": batches, "images_per_second": images / seconds}


STRIDE_WARNING = "Grad strides do not match bucket view strides"


def measure_trainer(batch_size: int, batches: int, device: torch.device, log_every: int, processes: int = 0) -> dict:
    """A real ``pixelcnn train`` run of ``batches`` batches: its own images/s (from metrics.jsonl);
    under ``torchrun --nproc-per-node PROCESSES`` when that is given."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] if processes else []
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, *launcher, "-m", "pixelcnn_cli", "train", "--dataset", "mnist-sample", "--epochs", "1",
                   "--batch-size", str(batch_size), "--limit-train-batches", str(batches), "--epoch-samples", "0",
                   "--seed", "0", "--runs-dir", folder, "--run-name", "bench", "--device", str(device),
                   "--log-every", str(log_every)]
        env = {**os.environ, "WANDB_MODE": "disabled"}
        started = time.perf_counter()
        # one test batch where the CLI can limit evaluation (its images/s is the training part's anyway)
        done = subprocess.run([*command, "--limit-test-batches", "1"], capture_output=True, text=True, env=env)
        if done.returncode != 0 and "limit-test-batches" in done.stderr:
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env)
        else:
            command.extend(["--limit-test-batches", "1"])
        wall = time.perf_counter() - started
        if done.returncode != 0:
            return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1], "command": " ".join(command)}
        metrics = [json.loads(line) for line in (Path(folder) / "bench" / "metrics.jsonl").read_text().splitlines()]
    shown = " ".join(command[1:]).replace(folder, "TMP").replace("-m torch.distributed.run", "torchrun")
    return {"batches": batches, "log_every": log_every, "processes": processes or 1,
            "images_per_second": metrics[-1]["images_per_second"], "wall_seconds": wall,
            "stride_warnings": done.stderr.count(STRIDE_WARNING),
            "command": shown.replace("-m pixelcnn_cli", "pixelcnn") if not processes else shown}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="time this preset's model and settings at 256 levels "
                        "[default: the seed's default model at 2 levels]")
    parser.add_argument("--data", choices=("grey", "rgb"), default="grey",
                        help="grey: the bundled 28x28 digits; rgb: random 32x32 RGB pictures [default: grey]")
    parser.add_argument("--against", metavar="SRC", help="another checkout's src/ folder: time both side by side")
    parser.add_argument("--rounds", type=int, default=5, help="with --against: pairs of runs [default: 5]")
    parser.add_argument("--batch-size", type=int, help="training batch size [default: the preset's, else 32]")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps [default: 30]")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first [default: 3]")
    parser.add_argument("--eval-batch-size", type=int, default=128, help="evaluation batch size [default: 128]")
    parser.add_argument("--eval-batches", type=int, default=5, help="timed evaluation batches [default: 5]")
    parser.add_argument("--trainer", action=argparse.BooleanOptionalAction, default=True,
                        help="also time a short real `pixelcnn train` run [default: yes]")
    parser.add_argument("--trainer-batches", type=int, default=30, help="batches of that run [default: 30]")
    parser.add_argument("--log-every", type=int, nargs="+", default=[1, 20],
                        help="--log-every of the trainer runs, one run each [default: 1 20]")
    parser.add_argument("--split", action=argparse.BooleanOptionalAction, default=True,
                        help="time the step phase by phase, and evaluation [default: yes]")
    parser.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True,
                        help="time evaluation as well [default: yes; --against times training only]")
    parser.add_argument("--torchrun", type=int, default=0, metavar="N",
                        help="launch the trainer runs with torchrun on N processes [default: no torchrun]")
    parser.add_argument("--threads", type=int, help="torch intra-op threads [default: torch's]")
    parser.add_argument("--device", default="cpu", help="torch device [default: cpu]")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    if args.against:
        return compare(args, argv if argv is not None else sys.argv[1:])
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = TrainConfig(**{**PRESETS[args.preset].values, "color_levels": 256}) if args.preset else None
    batch_size = args.batch_size or (config.batch_size if config else 32)
    data = random_rgb() if args.data == "rgb" else build_data("mnist-sample", ".data", False, {})
    spec = ModelSpec(data.channels, data.height, data.width, 256 if config else 2, data.num_classes)
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    info = {"torch": torch.__version__, "device": str(device), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "load_average_1min_before": load}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    model = (f"preset {args.preset} at 256 levels, {spec.channels}x{spec.height}x{spec.width}" if config else
             f"seed default: 30 fmaps, 6 gated layers, 7x7 kernels, 2 levels, 10 classes, "
             f"{spec.channels}x{spec.height}x{spec.width}")
    report = {"machine": info, "model": model, "pixelcnn_cli": str(Path(pixelcnn_cli.__file__).parent)}
    if args.split:
        report["training"] = measure_training(data, spec, device, batch_size, args.steps, args.warmup, config)
        if args.eval:
            report["eval"] = measure_eval(data, spec, device, args.eval_batch_size, args.eval_batches, config)
    if args.trainer:
        if args.threads or args.torchrun:  # torchrun's processes share the cores: one thread each by default
            os.environ["OMP_NUM_THREADS"] = str(args.threads or 1)
        report["trainer"] = [measure_trainer(batch_size, args.trainer_batches, device, n, args.torchrun)
                             for n in args.log_every]
    if hasattr(os, "getloadavg"):
        info["load_average_1min_after"] = round(os.getloadavg()[0], 2)

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"training benchmark · torch {info['torch']} · {info['device']} · {info['cpu_count']} CPUs · "
          f"{info['torch_threads']} torch threads · load {info['load_average_1min_before']} -> {info.get('load_average_1min_after')}")
    print(f"model: {report['model']} · code: {report['pixelcnn_cli']}")
    if args.split:
        print_split(report["training"], report.get("eval"))
    for tr in report.get("trainer", []):
        if "error" in tr:
            print(f"pixelcnn train: failed: {tr['error']}")
            continue
        launched = f" on {tr['processes']} processes" if tr["processes"] > 1 else ""
        warned = f", {tr['stride_warnings']} grad-stride warnings" if tr["processes"] > 1 else ""
        print(f"pixelcnn train --log-every {tr['log_every']}, {tr['batches']} batches{launched}: "
              f"{tr['images_per_second']:.1f} images/s{warned} (its own figure; `{tr['command']}`)")
    return 0


def without_against(argv: list[str]) -> list[str]:
    """``argv`` less ``--against SRC`` and ``--rounds N`` (either spelling)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--against", "--rounds"):
            skip = True
        elif not arg.startswith(("--against=", "--rounds=")):
            kept.append(arg)
    return kept


def compare(args, argv: list[str]) -> int:
    """The split in fresh processes, alternating this checkout's code and ``args.against``'s."""
    ours = str(Path(__file__).resolve().parents[1] / "src")
    theirs = str(Path(args.against).resolve())
    if not (Path(theirs) / "pixelcnn_cli").is_dir():
        print(f"--against: {theirs} holds no pixelcnn_cli package (give a checkout's src/ folder)", file=sys.stderr)
        return 2
    command = [sys.executable, str(Path(__file__).resolve()), *without_against(argv), "--no-trainer", "--no-eval", "--json"]
    speeds: dict[str, list[float]] = {ours: [], theirs: []}
    for round_ in range(args.rounds):
        for src in (ours, theirs) if round_ % 2 == 0 else (theirs, ours):  # ABBA: drift moves both alike
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": src})
            if done.returncode != 0:
                print(f"the run with {src} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
                return 1
            report = json.loads(done.stdout)
            speeds[src].append(report["training"]["images_per_second"])
            print(f"round {round_ + 1}: {report['pixelcnn_cli']}: {speeds[src][-1]:.1f} images/s", flush=True)
    new, old = (sorted(speeds[k])[len(speeds[k]) // 2] for k in (ours, theirs))
    print(f"{report['model']}, median of {args.rounds}: {new:.1f} images/s with {ours}, {old:.1f} with {theirs}: "
          f"{new / old:.2f}x")
    return 0


def print_split(t: dict, e: dict | None) -> None:
    print(f"training, batch {t['batch_size']}, {t['steps']} steps: {t['images_per_second']:.1f} images/s "
          f"({t['seconds_per_step'] * 1000:.1f} ms per step)")
    print(f"  {'phase':10} {'ms/step':>9} {'share':>7}")
    for phase in PHASES:
        print(f"  {phase:10} {t['phase_seconds_per_step'][phase] * 1000:>9.1f} {t['phase_share'][phase]:>7.1%}")
    if e:
        print(f"eval, batch {e['batch_size']}: {e['images_per_second']:.1f} images/s (forward and NLL, no gradients)")


if __name__ == "__main__":
    sys.exit(main())
