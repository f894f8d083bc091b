"""Priors over discrete codes: training and sampling speed, and the memory of opening a million maps.

    python benchmarks/codes.py                    # everything at the defaults, a table
    python benchmarks/codes.py --json             # the same as JSON
    python benchmarks/codes.py --part train --part sample --model gated --classes 10   # class-conditional gated
    python benchmarks/codes.py --part data --maps 100000 --no-npz --cold               # the dataset, from disk
    python benchmarks/codes.py --steps 1 --batch-size 2 --sample-count 2 --maps 2000  # a smoke run (seconds)

Maps are ``--size`` squared (32) of ``--num-codes`` (512) random codes; each model that takes codes
runs at its CPU preset (``gated-cpu``, ``pixelsnail-cpu``) with random weights, built as training
builds it (``building.build_model``). Speed depends on neither the codes nor the weights.

* **train**: ``--warmup`` untimed steps, then ``--steps`` timed ones at ``--batch-size``: codes on the
  input scale, ``model(x, labels)``, cross-entropy, backward, the preset's Adam step; maps/s, ms per
  map and the peak RSS of those steps.
* **sample**: ``--sample-count`` maps with the cached sampler (one CPU thread, as ``sampling.sample``
  runs it), and the naive one timed on its first ``--naive-pixels`` pixels and extrapolated (``~``)
  as ``benchmarks/sampling.py`` does; the ratio is naive over cached.
* **data**: ``--maps`` int16 maps written as ``.npy`` (and an uncompressed ``.npz`` unless ``--no-npz``),
  each opened with the ``codes`` dataset (which scans every code once) in a fresh process, then one
  batch of 32 read. RSS growth is split into anonymous memory (held) and file pages (the memory
  map's, the kernel's to drop). The file is in the page cache as written; ``--cold`` evicts it first.

Each model and each opening runs in a process of its own, so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import pixelcnn_cli
from pixelcnn_cli import sampling
from pixelcnn_cli.building import build_model, place_model
from pixelcnn_cli.config import TrainConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.presets import PRESETS
from pixelcnn_cli.training.optimizer import make_adam

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sampling as sampling_benchmark  # noqa: E402  (the sibling script: its naive-sampler timing)

MODELS = {"gated": "gated-cpu", "pixelsnail": "pixelsnail-cpu"}  # the families that take codes: their CPU preset
PARTS = ("train", "sample", "data")
BATCH_READ = 32  # maps in the batch read after opening
CHUNK_MAPS = 32768  # maps written at a time (64 MiB of 32x32 int16)
STATUS_KEYS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
INT_FLAGS = (  # flag, default, help; a model's worker gets them all
    ("--classes", 0, "class-conditional with N classes; 0: unconditional"), ("--size", 32, "maps are SIZE x SIZE"),
    ("--num-codes", 512, "codebook size"), ("--batch-size", 16, "training batch size"),
    ("--steps", 5, "timed training steps"), ("--warmup", 2, "untimed training steps first"),
    ("--sample-count", 16, "maps to sample"),
    ("--naive-pixels", 2, "time the naive sampler on this many pixels and extrapolate; 0: skip it"),
    ("--maps", 1_000_000, "maps in the dataset file"), ("--seed", 0, "seed of the random codes and uniforms"),
    ("--threads", 0, "torch intra-op threads; 0: torch's"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_kb() -> dict[str, int]:
    """This process's RSS figures in kB from /proc/self/status; without it, the peak from getrusage."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {"VmHWM": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {k: int(fields[k].split()[0]) for k in STATUS_KEYS if k in fields}


def reset_peak() -> bool:
    """Restart VmHWM from the current RSS (Linux's clear_refs 5), so a phase's peak is its own."""
    try:
        return Path("/proc/self/clear_refs").write_text("5") == 1
    except OSError:
        return False


def mib(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


def build(name: str, spec: ModelSpec, device: torch.device) -> tuple[torch.nn.Module, TrainConfig]:
    """The family's CPU preset at ``spec``'s codes, built and placed as ``pixelcnn train`` does."""
    config = TrainConfig(**{**PRESETS[MODELS[name]].values, "color_levels": spec.color_levels})
    torch.manual_seed(0)
    return place_model(build_model(config, spec)[0], device), config


def measure_training(model, config: TrainConfig, spec: ModelSpec, args, device: torch.device) -> dict:
    model.train()
    optimizer = make_adam(model.parameters(), config.learning_rate, config.weight_decay, device,
                          tuple(config.adam_betas))  # fused where the device has it, as the loop makes it
    generator = torch.Generator().manual_seed(args.seed)
    # drawn up front: making random codes is not the step's work
    shape = (args.batch_size, 1, spec.height, spec.width)
    batches = [(torch.randint(spec.color_levels, shape, generator=generator),
                torch.randint(spec.num_classes, shape[:1], generator=generator) if spec.num_classes else None)
               for _ in range(args.warmup + args.steps)]
    seconds, losses, peak_reset = 0.0, [], False
    for step, (codes, labels) in enumerate(batches):
        if step == args.warmup:  # the peak of the timed steps, the optimiser's state included
            peak_reset = reset_peak()
        codes, labels = codes.to(device), None if labels is None else labels.to(device)
        sync(device)
        started = time.perf_counter()
        x = sampling.levels_to_input(codes, spec.color_levels)
        loss = F.cross_entropy(model(x, labels), codes)  # logits (B, K, 1, H, W) against codes (B, 1, H, W)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        if step >= args.warmup:
            seconds += time.perf_counter() - started
            losses.append(loss.item())
    maps = args.steps * args.batch_size
    return {"batch_size": args.batch_size, "steps": args.steps, "maps_per_second": maps / seconds,
            "ms_per_map": 1000 * seconds / maps, "loss_first": losses[0], "loss_last": losses[-1],
            "peak_rss_mib": mib(memory_kb().get("VmHWM")), "peak_is_this_phase": peak_reset}


def measure_sampling(model, spec: ModelSpec, args, device: torch.device) -> dict:
    model.eval()
    count = args.sample_count
    labels = (torch.arange(count) % spec.num_classes).to(device) if spec.num_classes else None
    uniforms = sampling.draw_uniforms(count, 1, spec.height, spec.width, args.seed)
    sampling.sample(model, spec, None if labels is None else labels[:1], uniforms[:1, :, :2, :2], sampler="cached")  # warm-up
    peak_reset = reset_peak()
    sync(device)
    started = time.perf_counter()
    codes = sampling.sample(model, spec, labels, uniforms, sampler="cached")
    sync(device)
    cached = time.perf_counter() - started
    assert int(codes.min()) >= 0 and int(codes.max()) < spec.color_levels
    out = {"maps": count, "cached_seconds": cached, "codes_per_second": codes.numel() / cached,
           "ms_per_map": 1000 * cached / count, "cached_cpu_threads": sampling.CACHED_CPU_THREADS,
           "peak_rss_mib": mib(memory_kb().get("VmHWM")), "peak_is_this_phase": peak_reset}
    if args.naive_pixels > 0:
        naive, extrapolated, _ = sampling_benchmark.time_naive(model, spec, labels, uniforms, device, args.naive_pixels)
        out.update(naive_seconds=naive, naive_extrapolated=extrapolated,
                   naive_pixels_measured=min(args.naive_pixels, spec.height * spec.width), naive_over_cached=naive / cached)
    return out


def worker(name: str, args) -> dict:
    """One model's figures, in this (fresh) process."""
    device = torch.device(args.device)
    spec = ModelSpec(1, args.size, args.size, args.num_codes, args.classes, codes=True)
    rss_before = memory_kb().get("VmRSS")
    model, config = build(name, spec, device)
    options = PRESETS[MODELS[name]].values.get("model_options") or config.architecture()
    report = {"model": name, "preset": MODELS[name], "options": options, "parameters": sum(p.numel() for p in model.parameters()),
              "rss_before_model_mib": mib(rss_before), "torch_threads": torch.get_num_threads()}
    if "train" in args.part:
        report["train"] = measure_training(model, config, spec, args, device)
    if "sample" in args.part:
        report["sample"] = measure_sampling(model, spec, args, device)
    if device.type == "cuda":
        report["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return report


def write_maps(folder: Path, args) -> list[Path]:
    """``--maps`` random int16 maps as .npy, written a chunk at a time (never all in memory), and
    the same as an uncompressed .npz unless ``--no-npz``."""
    path = folder / "codes.npy"
    maps = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=(args.maps, args.size, args.size))
    rng = np.random.default_rng(args.seed)
    for start in range(0, args.maps, CHUNK_MAPS):
        stop = min(start + CHUNK_MAPS, args.maps)
        maps[start:stop] = rng.integers(0, args.num_codes, (stop - start, args.size, args.size), dtype=np.int16)
    maps.flush()
    if not args.npz:
        return [path]
    # np.savez streams a memory-mapped array into the zip in buffered chunks, stored (not compressed)
    np.savez(folder / "codes.npz", codes=np.load(path, mmap_mode="r"))
    return [path, folder / "codes.npz"]


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (clean pages need no privilege), so it is read from disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())  # dirty pages are not dropped
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def probe(path: str, num_codes: int) -> dict:
    """RSS before and after opening ``path`` with the codes dataset and after one batch, in this (fresh) process."""
    from pixelcnn_cli.data.codes import CodeMaps, Codes, CodesOptions  # imported before the first reading: not counted

    # the options, and a batch from a tiny array, first: the library pages they touch are not the dataset's
    options = CodesOptions(path=path, num_codes=num_codes)
    CodeMaps(np.zeros((BATCH_READ, 2, 2), np.int16), None).__getitems__(list(range(BATCH_READ)))
    before = memory_kb()
    started = time.perf_counter()
    data = Codes().load(None, False, options)
    seconds = time.perf_counter() - started
    opened = memory_kb()
    batch = data.train.__getitems__(list(range(min(BATCH_READ, len(data.train)))))  # a tiny file has fewer
    read = memory_kb()
    assert batch.images.shape[1] == 1 and data.codes == num_codes
    return {"open_seconds": seconds, "train_maps": len(data.train), "test_maps": len(data.test),
            "before_kb": before, "opened_kb": opened, "batch_kb": read}


def measure_file(path: Path, args) -> dict:
    if args.cold:
        evict(path)
    done = run_self(["--probe", str(path), "--num-codes", str(args.num_codes)])
    if "error" in done:
        return {"file": path.name, **done}
    grow = {when: {k: mib(done[f"{when}_kb"][k] - done["before_kb"][k]) for k in ("VmRSS", "RssAnon", "RssFile")
                   if k in done["before_kb"]} for when in ("opened", "batch")}
    return {"file": path.name, "bytes": path.stat().st_size, "page_cache": "evicted" if args.cold else "as written",
            "open_seconds": done["open_seconds"], "train_maps": done["train_maps"], "test_maps": done["test_maps"],
            "rss_before_mib": mib(done["before_kb"].get("VmRSS")),
            "growth_at_open_mib": grow["opened"], "growth_after_batch_mib": grow["batch"],
            "peak_rss_mib": mib(done["batch_kb"].get("VmHWM"))}


def measure_data(args) -> dict:
    folder = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="codes-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        paths = write_maps(folder, args)
        written = time.perf_counter() - started
        files = [measure_file(p, args) for p in paths]
    finally:
        if not args.keep:
            for name in ("codes.npy", "codes.npz"):
                (folder / name).unlink(missing_ok=True)
            if not args.workdir:
                shutil.rmtree(folder, ignore_errors=True)
    return {"maps": args.maps, "size": args.size, "dtype": "int16", "write_seconds": written,
            "folder": str(folder), "kept": args.keep, "files": files}


def run_self(extra: list[str]) -> dict:
    """This script in a fresh process, on this checkout's code; its JSON, or the error."""
    src = str(Path(pixelcnn_cli.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *extra], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout)


def worker_argv(args, name: str) -> list[str]:
    """The flags a model's worker needs, and ``--worker NAME``."""
    values = [x for flag, _, _ in INT_FLAGS for x in (flag, str(getattr(args, flag[2:].replace("-", "_"))))]
    parts = [flag for part in args.part if part != "data" for flag in ("--part", part)]
    return [*values, "--device", args.device, *parts, "--worker", name]


def machine(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "numpy": np.__version__, "device": str(device), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    if hasattr(os, "getloadavg"):
        info["load_average_1min_before"] = round(os.getloadavg()[0], 2)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--part", action="append", choices=PARTS, help="what to measure (repeatable) [default: all]")
    p.add_argument("--model", action="append", choices=sorted(MODELS), help="the model (repeatable) [default: both]")
    for flag, default, text in INT_FLAGS:
        p.add_argument(flag, type=int, default=default, help=f"{text} [default: {default}]")
    p.add_argument("--workdir", help="folder for the dataset files [default: a temporary one, removed]")
    p.add_argument("--keep", action="store_true", help="keep the dataset files")
    p.add_argument("--npz", action=argparse.BooleanOptionalAction, default=True,
                   help="also time an uncompressed .npz of the same maps [default: yes]")
    p.add_argument("--cold", action="store_true", help="evict each file from the page cache before opening it")
    p.add_argument("--device", default="cpu", help="torch device [default: cpu]")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--worker", choices=sorted(MODELS), help=argparse.SUPPRESS)  # internal: one model's figures
    p.add_argument("--probe", help=argparse.SUPPRESS)  # internal: one file's opening
    args = p.parse_args(argv)
    args.part = args.part or list(PARTS)
    args.model = args.model or list(MODELS)
    if args.threads:  # here, so the driver and its workers alike run with them
        torch.set_num_threads(args.threads)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker or args.probe:  # a fresh process: its JSON only
        print(json.dumps(worker(args.worker, args) if args.worker else probe(args.probe, args.num_codes)))
        return 0
    device = torch.device(args.device)
    report = {"machine": machine(device), "pixelcnn_cli": str(Path(pixelcnn_cli.__file__).parent),
              "maps": f"1x{args.size}x{args.size}, {args.num_codes} codes, "
                      + (f"{args.classes} classes" if args.classes else "unconditional"), "models": []}
    for name in args.model if {"train", "sample"} & set(args.part) else []:
        print(f"... {name}", file=sys.stderr, flush=True)
        report["models"].append({"model": name, **run_self(worker_argv(args, name))})
    if "data" in args.part:
        print(f"... {args.maps:,} maps", file=sys.stderr, flush=True)
        report["data"] = measure_data(args)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def print_report(report: dict) -> None:
    info = report["machine"]
    print(f"codes benchmark · {info['date']} · torch {info['torch']} · {info['device']} · {info['cpu_count']} CPUs · "
          f"{info['torch_threads']} torch threads · load {info.get('load_average_1min_before')} -> {info.get('load_average_1min_after')}")
    print(f"maps: {report['maps']} · code: {report['pixelcnn_cli']}")
    for m in report["models"]:
        if "error" in m:
            print(f"{m['model']}: failed: {m['error']}")
            continue
        print(f"{m['model']} ({m['preset']}, {m['parameters']:,} parameters, {m['options']})")
        if "train" in m:
            t = m["train"]
            print(f"  train, batch {t['batch_size']}, {t['steps']} steps: {t['maps_per_second']:.1f} maps/s, "
                  f"{t['ms_per_map']:.1f} ms/map, peak RSS {t['peak_rss_mib']} MiB "
                  f"(before the model: {m['rss_before_model_mib']} MiB), loss {t['loss_first']:.2f} -> {t['loss_last']:.2f}")
        if "sample" in m:
            s = m["sample"]
            tilde = "~" if s.get("naive_extrapolated") else ""
            naive = "" if s.get("naive_seconds") is None else \
                (f", naive {tilde}{s['naive_seconds']:.1f} s ({tilde}{s['naive_over_cached']:,.0f}x the cached; "
                 f"{'extrapolated from ' + str(s['naive_pixels_measured']) + ' pixels' if tilde else 'whole maps'})")
            print(f"  sample {s['maps']} maps, cached ({s['cached_cpu_threads']} thread): {s['cached_seconds']:.2f} s, "
                  f"{s['codes_per_second']:,.0f} codes/s, {s['ms_per_map']:.0f} ms/map{naive}")
    if "data" in report:
        print_data(report["data"])


def print_data(d: dict) -> None:
    print(f"dataset: {d['maps']:,} maps of {d['size']}x{d['size']} {d['dtype']}, written in {d['write_seconds']:.1f} s"
          + (f" (kept in {d['folder']})" if d["kept"] else ""))
    print(f"  {'file':10} {'MiB':>8} {'open s':>7} {'cache':>10} {'RSS +open':>10} {'anon':>7} {'file':>8} {'+batch':>7} {'peak':>7}")
    for f in d["files"]:
        if "error" in f:
            print(f"  {f['file']:10} failed: {f['error']}")
            continue
        g, b = f["growth_at_open_mib"], f["growth_after_batch_mib"]
        print(f"  {f['file']:10} {f['bytes'] / 2**20:>8.1f} {f['open_seconds']:>7.2f} {f['page_cache']:>10} "
              f"{g['VmRSS']:>10.1f} {g.get('RssAnon', 0):>7.1f} {g.get('RssFile', 0):>8.1f} {b['VmRSS']:>7.1f} "
              f"{f['peak_rss_mib']:>7.1f}")
    print("  RSS growth (MiB) from opening; anon: memory held; file: mapped pages touched (droppable); +batch: one batch")


if __name__ == "__main__":
    sys.exit(main())
