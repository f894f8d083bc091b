"""Sampling speed: the naive reference sampler against the cached incremental one.

    python benchmarks/sampling.py                 # the default cases, a table
    python benchmarks/sampling.py --json          # the same as JSON
    python benchmarks/sampling.py --case grey28 --batch-sizes 16 --naive-max-pixels 0   # cached only
    python benchmarks/sampling.py --model pixelcnnpp                      # PixelCNN++, small
    python benchmarks/sampling.py --model pixelcnnpp --nr-resnet 5 --nr-filters 160 --naive-max-pixels 2  # the paper's size
    python benchmarks/sampling.py --model pixelsnail                      # PixelSNAIL at the pixelsnail-cpu preset

Models have random weights and 10 classes: speed does not depend on what the weights are.
``--model gated`` (the default) is the seed's default architecture (30 feature maps, 6 gated
layers, 7x7 kernels); ``--model pixelcnnpp`` is PixelCNN++ with ``--nr-resnet`` and
``--nr-filters`` (default 1 and 32, a CPU-friendly size; the paper's is 5 and 160) and the
paper's 10 mixture components. Its default cases are 16 images of ``grey28-256`` and ``rgb32``.
``--model pixelsnail`` is PixelSNAIL with the ``pixelsnail-cpu`` preset's options (the same cases).

The naive sampler runs one full forward pass per pixel and colour, every one the same work,
so a full 28x28 run takes minutes. By default it is timed on its first ``--naive-max-pixels``
pixels (all colours) and the time is extrapolated linearly to the whole image; the output
says when a figure is extrapolated (``~`` in the table, ``naive_extrapolated`` in JSON).
``--naive-max-pixels -1`` runs it to the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import torch

from pixelcnn_cli import sampling
from pixelcnn_cli.building import place_model
from pixelcnn_cli.config import ArchitectureConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.models.gated import GatedPixelCNN
from pixelcnn_cli.models.pixelcnnpp import PixelCNNPP, PixelCNNPPOptions
from pixelcnn_cli.models.pixelsnail import PixelSNAIL, PixelSNAILOptions
from pixelcnn_cli.presets import PRESETS
from pixelcnn_cli.tf32 import full_fp32

# name: (channels, height, width, color levels)
CASES = {
    "grey28": (1, 28, 28, 2),
    "grey16": (1, 16, 16, 2),
    "grey28-256": (1, 28, 28, 256),
    "rgb32": (3, 32, 32, 256),
}
DEFAULT_RUNS = {
    "gated": [("grey28", 1), ("grey28", 16), ("grey28", 64), ("grey16", 16), ("rgb32", 16)],
    "pixelcnnpp": [("grey28-256", 16), ("rgb32", 16)],
    "pixelsnail": [("grey28-256", 16), ("rgb32", 16)],
}
MODELS = tuple(DEFAULT_RUNS)


@dataclass
class Result:
    model: str
    case: str
    channels: int
    height: int
    width: int
    color_levels: int
    images: int
    cached_seconds: float
    naive_seconds: float | None
    naive_extrapolated: bool
    naive_pixels_measured: int | None
    ratio: float | None
    cached_pixel_colours_per_second: float


class _Enough(Exception):
    pass


@dataclass
class ModelChoice:
    name: str = "gated"
    nr_resnet: int = 1  # pixelcnnpp only
    nr_filters: int = 32

    def describe(self) -> str:
        if self.name == "gated":
            return "gated (the seed's default: 30 fmaps, 6 gated layers, 7x7 kernels)"
        if self.name == "pixelsnail":
            return f"pixelsnail (the pixelsnail-cpu preset: {PRESETS['pixelsnail-cpu'].values['model_options']})"
        return f"pixelcnnpp (nr_resnet {self.nr_resnet}, nr_filters {self.nr_filters}, 10 mixture components)"


def build(channels: int, height: int, width: int, levels: int, device: torch.device, seed: int = 0,
          choice: ModelChoice | None = None):
    choice = choice or ModelChoice()
    torch.manual_seed(seed)
    spec = ModelSpec(channels, height, width, levels, 10)
    if choice.name == "gated":
        model = GatedPixelCNN(spec, ArchitectureConfig())
    elif choice.name == "pixelsnail":
        model = PixelSNAIL(spec, PixelSNAILOptions(**PRESETS["pixelsnail-cpu"].values["model_options"]))
    else:
        model = PixelCNNPP(spec, PixelCNNPPOptions(nr_resnet=choice.nr_resnet, nr_filters=choice.nr_filters))
    return place_model(model, device).eval(), spec


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cached(model, spec, labels, uniforms, device, repeats: int, threads: int | None) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        with full_fp32():  # as sampling.sample runs it (TF32 off on CUDA), so both samplers are timed alike
            sampling.sample_cached(model, spec, labels, uniforms, cpu_threads=threads)
        sync(device)
        best = min(best, time.perf_counter() - started)
    return best


def time_naive(model, spec, labels, uniforms, device, max_pixels: int) -> tuple[float, bool, int]:
    """Seconds for the whole image (extrapolated when only ``max_pixels`` were run)."""
    channels, height, width = uniforms.shape[1:]
    pixels = height * width
    limit = pixels if max_pixels < 0 else min(max_pixels, pixels)
    steps = limit * channels

    def stop_early(done: int, total: int) -> None:
        if done >= steps and done < total:
            raise _Enough

    with torch.no_grad():  # warm-up: one forward pass
        model(torch.zeros(uniforms.shape[0], channels, height, width, device=device), labels)
    sync(device)
    started = time.perf_counter()
    try:
        sampling.sample(model, spec, labels, uniforms, sampler="naive", on_step=stop_early)
    except _Enough:
        pass
    sync(device)
    seconds = time.perf_counter() - started
    return seconds * pixels / limit, limit < pixels, limit


def run(case: str, images: int, device: torch.device, max_pixels: int, repeats: int, threads: int | None,
        choice: ModelChoice | None = None) -> Result:
    choice = choice or ModelChoice()
    channels, height, width, levels = CASES[case]
    model, spec = build(channels, height, width, levels, device, choice=choice)
    labels = (torch.arange(images) % 10).to(device)
    uniforms = sampling.draw_uniforms(images, channels, height, width, seed=0)
    sampling.sample(model, spec, labels[:1], uniforms[:1, :, :2, :2], sampler="cached")  # warm-up
    cached = time_cached(model, spec, labels, uniforms, device, repeats, threads)
    naive, extrapolated, measured = (None, False, None)
    if max_pixels != 0:
        naive, extrapolated, measured = time_naive(model, spec, labels, uniforms, device, max_pixels)
    return Result(choice.describe(), case, channels, height, width, levels, images, cached, naive, extrapolated, measured,
                  naive / cached if naive is not None else None, channels * height * width / cached)


def machine(device: torch.device, cached_threads: int | None) -> dict:
    info = {
        "torch": torch.__version__,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cached_sampler_cpu_threads": cached_threads or torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min_before"] = round(os.getloadavg()[0], 2)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--case", action="append", choices=sorted(CASES),
                        help="image kind (repeatable): grey28 (1x28x28, 2 levels), grey16 (1x16x16, 2 levels), "
                             "grey28-256 (1x28x28, 256 levels), rgb32 (3x32x32, 256 levels) [default: gated: grey28 "
                             "at 1, 16 and 64 images, grey16 and rgb32 at 16; pixelcnnpp: grey28-256 and rgb32 at 16]")
    parser.add_argument("--model", choices=MODELS, default="gated", help="the model to sample [default: gated]")
    parser.add_argument("--nr-resnet", type=int, default=1, help="pixelcnnpp: blocks per stage [default: 1; the paper: 5]")
    parser.add_argument("--nr-filters", type=int, default=32,
                        help="pixelcnnpp: feature maps [default: 32; the paper: 160]")
    parser.add_argument("--batch-sizes", help="comma-separated numbers of images, for every --case [default: see --case]")
    parser.add_argument("--naive-max-pixels", type=int, default=28,
                        help="time the naive sampler on this many pixels (all colours) and extrapolate to the image; "
                             "-1: the whole image; 0: skip it [default: 28]")
    parser.add_argument("--repeats", type=int, default=3, help="cached runs per case; the best counts [default: 3]")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (the naive sampler's; the cached one uses "
                                                    f"{sampling.CACHED_CPU_THREADS} on the CPU) [default: torch's]")
    parser.add_argument("--cached-threads", type=int, default=sampling.CACHED_CPU_THREADS,
                        help="intra-op CPU threads of the cached sampler; 0: torch's "
                             f"[default: {sampling.CACHED_CPU_THREADS}, the library's default]")
    parser.add_argument("--device", default="cpu", help="torch device [default: cpu]")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cached_threads = args.cached_threads or None
    if args.case or args.batch_sizes:
        cases = args.case or ["grey28"]
        sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [16]
        runs = [(case, size) for case in cases for size in sizes]
    else:
        runs = DEFAULT_RUNS[args.model]
    choice = ModelChoice(args.model, args.nr_resnet, args.nr_filters)
    info = machine(device, cached_threads)
    results = []
    for case, images in runs:
        if not args.json:
            print(f"... {case} x {images}", file=sys.stderr, flush=True)
        results.append(run(case, images, device, args.naive_max_pixels, args.repeats, cached_threads, choice))
    if hasattr(os, "getloadavg"):
        info["load_average_1min_after"] = round(os.getloadavg()[0], 2)

    if args.json:
        print(json.dumps({"machine": info, "results": [asdict(r) for r in results]}, indent=2))
        return 0
    print(f"sampling benchmark · torch {info['torch']} · {info['device']} · {info['cpu_count']} CPUs · "
          f"{info['torch_threads']} torch threads (cached sampler: {info['cached_sampler_cpu_threads']} on the CPU)"
          + (f" · load {info.get('load_average_1min_before')} -> {info.get('load_average_1min_after')}"
             if "load_average_1min_before" in info else ""))
    print(f"model: {choice.describe()}, random weights, 10 classes")
    header = f"{'case':10} {'size':>9} {'levels':>6} {'images':>6} {'naive s':>10} {'cached s':>9} {'naive/cached':>12} {'pixel-colours/s':>15}"
    print(header)
    print("-" * len(header))
    for r in results:
        naive = "-" if r.naive_seconds is None else f"{'~' if r.naive_extrapolated else ''}{r.naive_seconds:.1f}"
        ratio = "-" if r.ratio is None else f"{'~' if r.naive_extrapolated else ''}{r.ratio:,.0f}x"
        print(f"{r.case:10} {r.channels}x{r.height}x{r.width:<3} {r.color_levels:>6} {r.images:>6} {naive:>10} "
              f"{r.cached_seconds:>9.2f} {ratio:>12} {r.cached_pixel_colours_per_second:>15,.0f}")
    if any(r.naive_extrapolated for r in results):
        measured = {r.naive_pixels_measured for r in results if r.naive_extrapolated}
        print(f"~ naive extrapolated from its first {', '.join(map(str, sorted(measured)))} pixels (every naive step is one "
              "full forward pass, the same work); --naive-max-pixels -1 runs it to the end")
    print("cached: best of", args.repeats, "runs; pixel-colours/s counts one colour of one pixel across the batch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
