"""One GPU check in minutes: the CUDA tests, training three ways, both samplers, eval, torchrun and NCCL.

    python benchmarks/gpu_check.py --out "$OUT/gpu_check.json"     # full check on a CUDA machine
    python benchmarks/gpu_check.py --device cpu                    # tiny CPU run: proves the script works
    bash benchmarks/gpu_check.sh                                   # install offline (.whl/) and run (GPU.md)

Every step runs the real command line (``python -m pixelcnn_cli ...``) in a subprocess with
its own timeout; a failing step is recorded as FAILED with its last error line and the
check goes on. One table is printed at the end (and written as JSON to ``--out``, with the
full output of every command in the log beside it); the exit status is 1 when any step
failed, else 0.

Steps, on a CUDA device (``--size full``, about 4 to 7 minutes on one H200):

* **cuda tests**: ``pytest -k cuda`` (the tests that skip without CUDA);
* **data**: CIFAR-shaped pictures made here, offline: 3,600 RGB 32x32 PNGs in 10 class
  folders (each class its own colours and stripes, plus noise), read by the ``imagefolder``
  dataset plugin;
* **train fp32 / compile / bf16**: ``pixelcnn train`` at ``--color-levels 256``, batch 64, the
  default architecture, 2 epochs of 50 batches, eager fp32, ``--compile`` and
  ``--precision bf16``. img/s is the second epoch's (the first pays for start-up and
  compilation; it is reported too);
* **sample naive / cached**: ``pixelcnn sample`` of 64 images from the fp32 checkpoint with
  each sampler and the same ``--seed``; time is the sampler's own (its summary line), and the
  cached row says how many pixel colours and whole images agree with the naive ones;
* **eval**: ``pixelcnn eval`` of that checkpoint on the held-out pictures (bits/dim);
* **torchrun**: ``torchrun --standalone --nproc-per-node 1 -m pixelcnn_cli train ...``. With
  one process the trainer makes no process group, so NCCL is checked by the next step;
* **nccl**: a one-process NCCL group under torchrun: ``init_process_group("nccl")`` and
  all-reduces on the GPU;
* **test suite**: the whole ``pytest`` run, with the time that is left of ``--budget``.

Without CUDA (or with ``--device cpu``) the CUDA-only steps are skipped, saying so, and the
rest runs at tiny sizes (8x8 pictures, a 1-layer model) in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SKIP_LINE = "no CUDA device: skipping the CUDA tests, compile, bf16 and NCCL steps"
TINY_ARCH = ["--hidden-fmaps", "6", "--out-hidden-fmaps", "6", "--hidden-layers", "1",
             "--causal-ksize", "3", "--hidden-ksize", "3"]
CLASSES = 10


@dataclass(frozen=True)
class Size:
    """How big each step is."""

    name: str
    side: int  # pictures are side x side RGB
    per_class: int  # pictures per class folder (a tenth are held out as the test split)
    batch_size: int
    batches: int  # training batches per epoch
    epochs: int
    test_batches: int
    samples: int
    torchrun_batches: int
    arch: tuple[str, ...] = ()


SIZES = {
    # 10 x 360 pictures: 3,240 train (50 batches of 64) and 360 test
    "full": Size("full", 32, 360, 64, 50, 2, 2, 64, 25),
    "tiny": Size("tiny", 8, 4, 8, 2, 2, 1, 64, 2, tuple(TINY_ARCH)),
}

# PixelSNAIL's options per size: the pixelsnail-cpu preset's network, and a tinier one for the CPU run
PIXELSNAIL = {
    "full": {"nr_resnet": 1, "nr_filters": 32, "attention_blocks": 1, "key_size": 16, "value_size": 16,
             "nr_logistic_mix": 5, "dropout": 0.0},
    "tiny": {"nr_resnet": 1, "nr_filters": 8, "attention_blocks": 1, "key_size": 4, "value_size": 4,
             "nr_logistic_mix": 2, "dropout": 0.0},
}

# step: its own time limit in seconds, full size (tiny runs get the same; they need far less)
TIMEOUTS = {"cuda tests": 180, "train pixelcnnpp": 240, "train fp32": 180, "train log-every 1": 180, "deterministic": 240, "train compile": 300, "train bf16": 180, "sample naive": 180,
            "train pixelsnail": 240, "pixelsnail bf16 compile": 300, "pixelsnail samplers": 240,
            "sample cached": 180, "eval": 120, "torchrun": 180, "nccl": 90, "test suite": 600}


@dataclass
class Step:
    name: str
    status: str = "SKIPPED"  # PASSED, FAILED, SKIPPED, or TIMEOUT (the test suite, out of the budget)
    seconds: float | None = None
    result: str = ""  # one line for the table
    figures: dict = field(default_factory=dict)
    error: str | None = None
    commands: list[str] = field(default_factory=list)


class Log:
    """Everything every command printed, to a file (or nowhere)."""

    def __init__(self, path: Path | None):
        self.file = open(path, "w", encoding="utf-8") if path else None

    def write(self, text: str) -> None:
        if self.file:
            self.file.write(text if text.endswith("\n") else text + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


class StepFailed(Exception):
    pass


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool


def last_error_line(text: str) -> str:
    """The line that says what went wrong: the last ``error:``/``...Error`` line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("error:", "FAILED")) or re.search(r"\w+(Error|Exception)\b", line):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


class Checker:
    def __init__(self, args, size: Size, device: str, work: Path, log: Log):
        self.args, self.size, self.device, self.work, self.log = args, size, device, work, log
        self.started = time.perf_counter()
        self.env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
        if device == "cpu":  # tiny models: a second thread costs more than it gives, and much more on a busy machine
            self.env["OMP_NUM_THREADS"] = "1"
        self.steps: list[Step] = []
        self.data_root = work / "pictures"
        self.runs = work / "runs"
        self.checkpoint: Path | None = None
        self.naive_png: Path | None = None
        self.naive_seconds = 0.0

    # -- running commands ---------------------------------------------------------------------
    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.started)

    def run(self, step: Step, command: list[str], cwd: Path | None = None, timeout: float | None = None,
            env: dict | None = None) -> Ran:
        timeout = TIMEOUTS.get(step.name, 180) if timeout is None else timeout
        shown = " ".join(command).replace(sys.executable, "python").replace(str(self.work), "WORK")
        step.commands.append(shown)
        self.log.write(f"\n$ {shown}    (cwd {cwd or self.work}, timeout {timeout:.0f} s)")
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd or self.work, env=env or self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        timed_out = False
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the whole group: torchrun's workers, compile workers
            except ProcessLookupError:
                pass
            stdout, stderr = process.communicate()
        seconds = time.perf_counter() - started
        self.log.write(f"--- stdout\n{stdout}--- stderr\n{stderr}--- exit {process.returncode} after {seconds:.1f} s"
                       + (" (timed out)" if timed_out else ""))
        return Ran(process.returncode, stdout, stderr, seconds, timed_out)

    def checked(self, step: Step, command: list[str], **kwargs) -> Ran:
        ran = self.run(step, command, **kwargs)
        if ran.timed_out:
            raise StepFailed(f"timed out after {ran.seconds:.0f} s; last output: {last_error_line(ran.stderr + ran.stdout)}")
        if ran.returncode != 0:
            raise StepFailed(f"exit {ran.returncode}: {last_error_line(ran.stderr or ran.stdout)}")
        return ran

    def step(self, name: str, fn, skip: str | None = None) -> Step:
        step = Step(name)
        self.steps.append(step)
        if skip:
            step.result = skip
            say(f"[{len(self.steps):2}] {name:14} SKIPPED  {skip}")
            return step
        say(f"[{len(self.steps):2}] {name:14} ...")
        started = time.perf_counter()
        try:
            fn(step)
            if step.status == "SKIPPED":
                step.status = "PASSED"
        except Exception as error:  # one step's failure never stops the check
            step.status = "FAILED"
            step.error = str(error) if isinstance(error, StepFailed) else f"{type(error).__name__}: {error}"
            step.result = step.error
            self.log.write(f"!!! {name} FAILED: {step.error}")
        step.seconds = time.perf_counter() - started
        say(f"[{len(self.steps):2}] {name:14} {step.status:8} {step.seconds:6.1f} s  {step.result}")
        return step

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pixelcnn_cli", *args]

    # -- the steps -----------------------------------------------------------------------------
    def pytest(self, step: Step, selection: list[str], timeout: float, budgeted: bool = False) -> None:
        ran = self.run(step, [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", *selection],
                       cwd=REPO, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        counts = pytest_counts(ran.stdout)
        step.figures.update(counts)
        summary = ", ".join(f"{n} {what}" for what, n in counts.items()) or "no summary"
        if ran.timed_out:
            marks = "".join(line.split("[")[0].strip() for line in ran.stdout.splitlines()
                            if re.fullmatch(r"[.FsExX]+(\s+\[\s*\d+%\])?", line.strip()))
            bad = marks.count("F") + marks.count("E")
            so_far = f"{marks.count('.')} passed, {bad} failed or errors, {marks.count('s')} skipped so far"
            if bad or not budgeted:
                raise StepFailed(f"timed out after {ran.seconds:.0f} s: {so_far}")
            step.status = "TIMEOUT"  # the budget ran out, nothing failed: not counted as a failure
            step.result = f"out of the budget after {ran.seconds:.0f} s: {so_far}"
            return
        step.result = summary
        if ran.returncode != 0:
            failed = [line for line in ran.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
            raise StepFailed(f"{summary}; " + (failed[0][:240] if failed else last_error_line(ran.stdout + ran.stderr)))

    def cuda_tests(self, step: Step) -> None:
        self.pytest(step, ["-k", "cuda"], TIMEOUTS["cuda tests"])

    def test_suite(self, step: Step) -> None:
        workers = ["-n", str(self.args.suite_workers)] if self.args.suite_workers else []  # pytest-xdist
        self.pytest(step, workers, max(30.0, min(TIMEOUTS["test suite"], self.left())), budgeted=True)

    def data(self, step: Step) -> None:
        n = write_pictures(self.data_root, self.size.side, self.size.per_class)
        step.figures = {"pictures": n, "side": self.size.side, "classes": CLASSES}
        step.result = f"{n} RGB {self.size.side}x{self.size.side} PNGs, {CLASSES} classes (imagefolder)"

    def train_command(self, name: str, batches: int, extra: list[str], arch: bool = True) -> list[str]:
        s = self.size
        return ["train", "--dataset", "imagefolder", "--dataset-option", f"root={self.data_root}",
                "--dataset-option", f"height={s.side}", "--dataset-option", f"width={s.side}",
                "--color-levels", "256", "--batch-size", str(s.batch_size), "--epochs", str(s.epochs),
                "--limit-train-batches", str(batches), "--limit-test-batches", str(s.test_batches),
                "--epoch-samples", "0", "--seed", "0", "--runs-dir", str(self.runs), "--run-name", name,
                "--device", self.device, *(s.arch if arch else ()), *extra]

    def read_training(self, step: Step, run: Path, ran: Ran) -> None:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        metrics = [json.loads(line) for line in lines]
        last = metrics[-1]
        step.figures = {"images_per_second": last["images_per_second"],
                        "first_epoch_images_per_second": metrics[0]["images_per_second"],
                        "epochs": len(metrics), "train_bits_per_dim": last["train_bits_per_dim"],
                        "test_bits_per_dim": last["test_bits_per_dim"], "wall_seconds": ran.seconds}
        step.result = (f"{last['images_per_second']:,.0f} img/s (epoch {len(metrics)}; epoch 1: "
                       f"{metrics[0]['images_per_second']:,.0f}) · train {last['train_bits_per_dim']:.3f} bits/dim")
        if not all(math.isfinite(m["train_bits_per_dim"]) for m in metrics):
            raise StepFailed(f"non-finite training loss: {step.result}")

    def train(self, name: str, extra: list[str], arch: bool = True):
        def run(step: Step) -> None:
            ran = self.checked(step, self.cli(*self.train_command(name, self.size.batches, extra, arch)),
                               timeout=TIMEOUTS[step.name])
            self.read_training(step, self.runs / name, ran)
            if name == "fp32":
                self.checkpoint = self.runs / name / "checkpoints" / "best.pt"
        return run

    def deterministic(self, step: Step) -> None:
        """Two --deterministic runs with one seed must end with the same weights, bit for bit; two
        default runs are compared too (on a GPU they may differ: that is what the flag is for)."""
        batches = max(2, self.size.batches // 5)
        same = {}
        for mode, extra in (("deterministic", ["--deterministic"]), ("default", [])):
            states = []
            for run in ("a", "b"):
                name = f"{mode}-{run}"
                command = self.train_command(name, batches, extra)
                command[command.index("--epochs") + 1] = "1"
                self.checked(step, self.cli(*command), timeout=TIMEOUTS["deterministic"] / 4)
                states.append(torch.load(self.runs / name / "checkpoints" / "last.pt", map_location="cpu",
                                         weights_only=True)["model_state"])
            same[mode] = all(torch.equal(states[0][k], states[1][k]) for k in states[0])
        step.figures = {"batches": batches, "deterministic_identical": same["deterministic"],
                        "default_identical": same["default"]}
        step.result = (f"2 runs of {batches} steps each: --deterministic {'identical' if same['deterministic'] else 'DIFFER'}"
                       f", default {'identical' if same['default'] else 'differ'}")
        if not same["deterministic"]:
            raise StepFailed(step.result)

    def sample(self, sampler: str):
        def run(step: Step) -> None:
            if self.checkpoint is None or not self.checkpoint.exists():
                raise StepFailed("no checkpoint: train fp32 failed")
            target = self.work / f"samples-{sampler}.png"
            ran = self.checked(step, self.cli("sample", "-m", str(self.checkpoint), "--sampler", sampler, "--count",
                                              str(self.size.samples), "--seed", "0", "--output", str(target),
                                              "--device", self.device), timeout=TIMEOUTS[step.name])
            # the sampler's summary: "sampling: 3,072/3,072 pixel-colours in 1.2 s (2,560 pixel-colours/s ...)"
            found = re.search(r"([\d,]+)/[\d,]+ pixel-colours in ([\d.]+) s \(([\d,]+) pixel-colours/s", ran.stderr)
            seconds = ran.seconds
            if found:
                steps, rate = int(found.group(1).replace(",", "")), int(found.group(3).replace(",", ""))
                seconds = steps / rate if rate else float(found.group(2))  # the rate has more digits at small times
            step.figures = {"sampler_seconds": seconds, "wall_seconds": ran.seconds, "images": self.size.samples}
            step.result = f"{self.size.samples} images in {seconds:.3g} s" + ("" if found else " (wall)")
            if sampler == "naive":
                self.naive_png = target
                self.naive_seconds = seconds
                return
            if self.naive_png is None:
                step.result += "; no naive samples to compare with"
                return
            same, images = agreement(self.naive_png, target, self.size.samples, self.size.side)
            step.figures.update({"identical_pixel_colours": same, "identical_images": images,
                                 "speedup_over_naive": self.naive_seconds / max(seconds, 1e-9)})
            step.result += (f" ({self.naive_seconds / max(seconds, 1e-9):.1f}x naive) · same as naive: {same:.2%} of "
                            f"pixel colours, {images}/{self.size.samples} images")
        return run

    def samplers(self, run: str):
        """Both samplers on ``run``'s checkpoint, same seed: the images must agree (and how fast each is)."""
        def go(step: Step) -> None:
            checkpoint = self.runs / run / "checkpoints" / "best.pt"
            if not checkpoint.exists():
                raise StepFailed(f"no checkpoint: train {run} failed")
            seconds, pictures = {}, {}
            for sampler in ("naive", "cached"):
                pictures[sampler] = self.work / f"{run}-{sampler}.png"
                ran = self.checked(step, self.cli("sample", "-m", str(checkpoint), "--sampler", sampler, "--count",
                                                  str(self.size.samples), "--seed", "0", "--output",
                                                  str(pictures[sampler]), "--device", self.device),
                                   timeout=TIMEOUTS[step.name] / 2)
                seconds[sampler] = ran.seconds
            same, images = agreement(pictures["naive"], pictures["cached"], self.size.samples, self.size.side)
            step.figures = {"naive_wall_seconds": seconds["naive"], "cached_wall_seconds": seconds["cached"],
                            "identical_pixel_colours": same, "identical_images": images, "images": self.size.samples}
            step.result = (f"{self.size.samples} images: naive {seconds['naive']:.1f} s, cached {seconds['cached']:.1f} s "
                           f"(wall) · same: {same:.2%} of pixel colours, {images}/{self.size.samples} images")
        return go

    def eval(self, step: Step) -> None:
        if self.checkpoint is None or not self.checkpoint.exists():
            raise StepFailed("no checkpoint: train fp32 failed")
        ran = self.checked(step, self.cli("eval", "-m", str(self.checkpoint), "--json", "--batch-size", "256",
                                          "--device", self.device), timeout=TIMEOUTS["eval"])
        record = json.loads(ran.stdout.strip().splitlines()[-1])
        step.figures = {"bits_per_dim": record["bits_per_dim"], "images": record["images"], "wall_seconds": ran.seconds}
        step.result = f"{record['bits_per_dim']:.4f} bits/dim on {record['images']} test pictures"
        if not math.isfinite(record["bits_per_dim"]):
            raise StepFailed(f"non-finite bits/dim: {step.result}")

    def torchrun(self, step: Step) -> None:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                   "-m", "pixelcnn_cli", *self.train_command("torchrun", self.size.torchrun_batches, [])]
        ran = self.checked(step, command, timeout=TIMEOUTS["torchrun"])
        self.read_training(step, self.runs / "torchrun", ran)
        step.result += " (1 process: no process group)"

    def nccl(self, step: Step) -> None:
        probe = self.work / "nccl_probe.py"
        probe.write_text(NCCL_PROBE)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", str(probe)]
        ran = self.checked(step, command, timeout=TIMEOUTS["nccl"])
        record = json.loads([line for line in ran.stdout.splitlines() if line.startswith("{")][-1])
        step.figures = record
        if not record.get("correct"):
            raise StepFailed(f"all-reduce gave a wrong sum: {record}")
        step.result = (f"backend {record['backend']}, NCCL {record['nccl']}, world {record['world_size']}: "
                       f"all-reduce of {record['megabytes']:.0f} MB correct, {record['ms_per_all_reduce']:.2f} ms each")


NCCL_PROBE = '''\
import json, os, time
import torch
import torch.distributed as dist

local = int(os.environ["LOCAL_RANK"])
device = torch.device("cuda", local)
torch.cuda.set_device(device)
dist.init_process_group("nccl", device_id=device)
x = torch.full((16 * 2**20,), float(dist.get_rank() + 1), device=device)  # 64 MB of fp32
dist.all_reduce(x)
torch.cuda.synchronize()
expected = sum(range(1, dist.get_world_size() + 1))
correct = bool((x == expected).all())
started = time.perf_counter()
for _ in range(10):
    dist.all_reduce(x)
torch.cuda.synchronize()
ms = (time.perf_counter() - started) * 100
if dist.get_rank() == 0:
    print(json.dumps({"backend": dist.get_backend(), "world_size": dist.get_world_size(), "correct": correct,
                      "nccl": ".".join(map(str, torch.cuda.nccl.version())), "megabytes": x.numel() * 4 / 1e6,
                      "ms_per_all_reduce": ms}))
dist.destroy_process_group()
'''


# -- helpers --------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pytest_counts(stdout: str) -> dict[str, int]:
    """``{"passed": 3, "failed": 1, ...}`` from pytest's last summary line."""
    for line in reversed(stdout.splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)", line)
        if found and (" in " in line or "no tests ran" in line):
            return {("error" if what.startswith("error") else what): int(n) for n, what in found}
    return {}


def write_pictures(root: Path, side: int, per_class: int, seed: int = 0) -> int:
    """``per_class`` RGB ``side x side`` PNGs in each of 10 class folders: structured, not noise.

    Class k has its own two colours and stripe angle and frequency; each picture adds a random
    phase, a bright disc and a little noise, so a PixelCNN has something to learn.
    """
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:side, 0:side].astype(np.float32) / side
    count = 0
    for k in range(CLASSES):
        folder = root / f"class{k}"
        folder.mkdir(parents=True)
        angle = math.pi * k / CLASSES
        frequency = 2 + k % 4
        base = np.array([(37 * k) % 256, (91 * k + 60) % 256, (151 * k + 120) % 256], dtype=np.float32)
        other = 255 - base
        for i in range(per_class):
            phase = rng.random() * 2 * math.pi
            wave = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * (rows * math.cos(angle) + cols * math.sin(angle)) + phase)
            picture = base * wave[..., None] + other * (1 - wave[..., None])
            r, c, radius = rng.random(), rng.random(), 0.1 + 0.2 * rng.random()
            disc = (rows - r) ** 2 + (cols - c) ** 2 < radius**2
            picture[disc] = 255 - picture[disc] * 0.3
            picture += rng.normal(0, 8, picture.shape)
            Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.png")
            count += 1
    return count


def tiles(path: Path, count: int, side: int) -> np.ndarray:
    """The ``count`` pictures of a sample grid PNG (``pixelcnn_cli.images.grid``: 2-pixel padding,
    a square grid, enlarged ``min(4, 256 // grid side)`` times), as ``count x side x side x 3``."""
    picture = np.asarray(Image.open(path).convert("RGB"))
    nrow = max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / nrow)
    height, width = rows * (side + 2) + 2, nrow * (side + 2) + 2
    scale = picture.shape[0] // height
    if scale < 1 or picture.shape[:2] != (height * scale, width * scale):
        raise StepFailed(f"{path.name}: {picture.shape[1]}x{picture.shape[0]} is not a grid of {count} {side}x{side} pictures")
    picture = picture[::scale, ::scale]
    out = []
    for i in range(count):
        r, c = divmod(i, nrow)
        y, x = 2 + r * (side + 2), 2 + c * (side + 2)
        out.append(picture[y:y + side, x:x + side])
    return np.stack(out)


def agreement(a: Path, b: Path, count: int, side: int) -> tuple[float, int]:
    """(fraction of identical pixel colours, number of identical pictures) of two sample grids."""
    first, second = tiles(a, count, side), tiles(b, count, side)
    same = first == second
    return float(same.mean()), int(same.reshape(count, -1).all(axis=1).sum())


def machine(device: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if device == "cuda":
        info.update({"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                     "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)})
    try:
        from importlib.metadata import entry_points

        info["dataset_plugins"] = sorted(ep.name for ep in entry_points(group="pixelcnn.datasets"))
    except Exception as error:  # reported, not fatal: the train step says what is missing
        info["dataset_plugins"] = f"unreadable: {error}"
    return info


def table(steps: list[Step]) -> str:
    width = max(len(s.name) for s in steps)
    header = f"{'step':{width}}  {'status':7}  {'seconds':>7}  result"
    lines = [header, "-" * max(len(header), 100)]
    for s in steps:
        seconds = "-" if s.seconds is None else f"{s.seconds:.1f}"
        lines.append(f"{s.name:{width}}  {s.status:7}  {seconds:>7}  {s.result}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, help="write the table as JSON here; the log goes beside it (.log)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="cuda runs every step; cpu skips the CUDA-only ones [default: cuda when available]")
    parser.add_argument("--size", choices=sorted(SIZES), help="step sizes [default: full on CUDA, tiny on the CPU]")
    parser.add_argument("--suite", action=argparse.BooleanOptionalAction,
                        help="run the whole test suite last, in the time left [default: yes on CUDA, no on the CPU]")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds for the whole check; the test suite gets what is left, and a suite stopped "
                             "by it with no failure so far is TIMEOUT, not FAILED [default: 450]")
    parser.add_argument("--suite-workers", type=int, default=0,
                        help="run the test suite in this many processes (needs pytest-xdist) [default: 0, one]")
    parser.add_argument("--work-dir", type=Path, help="where data and runs go [default: a temporary folder, removed]")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        parser.error("--device cuda: torch sees no CUDA device")
    device = "cuda" if (args.device == "auto" and cuda) or args.device == "cuda" else "cpu"
    size = SIZES[args.size or ("full" if device == "cuda" else "tiny")]
    suite = args.suite if args.suite is not None else device == "cuda"
    notice = None
    if device != "cuda":
        notice = SKIP_LINE if not cuda else SKIP_LINE.replace("no CUDA device", "--device cpu")
        print(notice, flush=True)

    log_path = args.out.with_suffix(".log") if args.out else None
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    log = Log(log_path)
    temporary = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="gpu_check-")) if temporary else args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    info = machine(device)
    say(f"gpu check · {size.name} size · " + " · ".join(f"{k} {v}" for k, v in info.items() if k != "platform"))
    log.write(json.dumps({"machine": info, "size": asdict(size), "notice": notice}, indent=2))

    c = Checker(args, size, device, work, log)
    no_cuda = "no CUDA device" if device != "cuda" else None
    try:
        c.step("cuda tests", c.cuda_tests, skip=no_cuda)
        c.step("data", c.data)
        c.step("train fp32", c.train("fp32", []))
        c.step("train log-every 1", c.train("log-every-1", ["--log-every", "1"]))  # the host waits every step
        c.step("deterministic", c.deterministic)
        # PixelCNN++ at the paper's size on a GPU (its CIFAR-10 model), a tiny one on the CPU
        pp = [] if size.name == "full" else ["--model-option", "nr_resnet=1", "--model-option", "nr_filters=8",
                                             "--model-option", "nr_logistic_mix=2"]
        c.step("train pixelcnnpp", c.train("pixelcnnpp", ["--model", "pixelcnnpp", *pp], arch=False))
        # PixelSNAIL at the pixelsnail-cpu preset's size (its naive sampler on the paper's 46M would
        # take minutes of the budget), smaller still on the CPU; bf16 and compile on a GPU
        sn = ["--model", "pixelsnail", *(f for k, v in PIXELSNAIL[size.name].items() for f in ("--model-option", f"{k}={v}"))]
        c.step("train pixelsnail", c.train("pixelsnail", sn, arch=False))
        c.step("pixelsnail bf16 compile", c.train("pixelsnail-bf16", [*sn, "--precision", "bf16", "--compile"], arch=False),
               skip=no_cuda)
        c.step("pixelsnail samplers", c.samplers("pixelsnail"))
        c.step("train compile", c.train("compile", ["--compile"]), skip=no_cuda)
        c.step("train bf16", c.train("bf16", ["--precision", "bf16"]), skip=no_cuda)
        c.step("sample naive", c.sample("naive"))
        c.step("sample cached", c.sample("cached"))
        c.step("eval", c.eval)
        c.step("torchrun", c.torchrun, skip=no_cuda)
        c.step("nccl", c.nccl, skip=no_cuda)
        suite_skip = None if suite else ("not asked for (--suite)" if device == "cuda" else "tiny CPU run (--suite runs it)")
        if suite and c.left() < 30:
            suite_skip = f"no time left of the {args.budget:.0f} s budget"
        c.step("test suite", c.test_suite, skip=suite_skip)
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)

    failed = [s.name for s in c.steps if s.status == "FAILED"]
    total = time.perf_counter() - c.started
    report = {"machine": info, "size": asdict(size), "notice": notice, "seconds": total, "failed": failed,
              "steps": [asdict(s) for s in c.steps]}
    text = table(c.steps)
    print(f"\ngpu check · {info.get('gpu', device)} · torch {info['torch']} · {size.name} size · {total:.0f} s")
    if notice:
        print(notice)
    print(text)
    tally = {status: sum(s.status == status for s in c.steps) for status in ("PASSED", "FAILED", "SKIPPED", "TIMEOUT")}
    print(" · ".join(f"{n} {status.lower()}" for status, n in tally.items() if n)
          + (f" · failed: {', '.join(failed)}" if failed else ""))
    log.write("\n" + text)
    log.close()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
        print(f"JSON: {args.out} · log: {log_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
