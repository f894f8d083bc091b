"""benchmarks/gpu_check.py runs on the CPU (tiny sizes, the CUDA steps skipped) and reports failures as rows."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
ROWS = ["cuda tests", "data", "train fp32", "train log-every 1", "deterministic", "train pixelcnnpp", "train pixelsnail",
        "pixelsnail bf16 compile", "pixelsnail samplers", "train compile", "train bf16", "sample naive", "sample cached",
        "eval", "torchrun", "nccl", "test suite"]
SKIP_LINE = "skipping the CUDA tests, compile, bf16 and NCCL steps"


def run_check(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "out" / "gpu_check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)], cwd=tmp_path,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=False)
    return done, json.loads(out.read_text())


def load_script():
    spec = importlib.util.spec_from_file_location("benchmark_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_tiny_cpu_check_runs_every_step_it_can(tmp_path):
    done, report = run_check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert SKIP_LINE in done.stdout.splitlines()[0]
    assert report["notice"].endswith(SKIP_LINE) and report["failed"] == []
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ROWS
    ran = ["data", "train fp32", "train log-every 1", "deterministic", "train pixelcnnpp", "train pixelsnail",
           "pixelsnail samplers", "sample naive", "sample cached", "eval"]
    assert {name for name, s in steps.items() if s["status"] == "PASSED"} == set(ran)
    assert all(s["status"] == "SKIPPED" for name, s in steps.items() if name not in ran)
    assert steps["train fp32"]["figures"]["images_per_second"] > 0
    assert steps["train fp32"]["figures"]["epochs"] == 2
    cached = steps["sample cached"]["figures"]
    assert cached["identical_images"] == 64 and cached["identical_pixel_colours"] == 1.0  # exact on the CPU
    assert 0 < steps["eval"]["figures"]["bits_per_dim"] < 9
    table = done.stdout[done.stdout.index("step "):]
    for name in ROWS:  # one table row per step, in order
        assert f"\n{name} " in table
    assert steps["deterministic"]["figures"]["deterministic_identical"] is True
    snail = steps["pixelsnail samplers"]["figures"]
    assert snail["identical_images"] == 64 and snail["identical_pixel_colours"] == 1.0  # exact on the CPU
    assert "10 passed · 7 skipped" in done.stdout
    # train twice, 4 deterministic-check runs, pixelcnnpp, pixelsnail and its 2 samples, 2 samples, eval
    assert (tmp_path / "out" / "gpu_check.log").read_text().count("\n$ ") == 13


def test_a_failing_step_is_a_row_and_the_exit_status(tmp_path):
    done, report = run_check(tmp_path, PIXELCNN_DISABLE_PLUGINS="1")  # imagefolder switched off: training fails
    assert done.returncode == 1
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ROWS
    assert report["failed"] == ["train fp32", "train log-every 1", "deterministic", "train pixelcnnpp", "train pixelsnail",
                                "pixelsnail samplers", "sample naive", "sample cached", "eval"]
    assert "imagefolder" in steps["train fp32"]["error"] and "PIXELCNN_DISABLE_PLUGINS" in steps["train fp32"]["error"]
    assert steps["eval"]["error"] == "no checkpoint: train fp32 failed"
    assert ("1 passed · 9 failed · 7 skipped · failed: train fp32, train log-every 1, deterministic, train pixelcnnpp, "
            "train pixelsnail, pixelsnail samplers, sample naive, sample cached, eval") in done.stdout


def test_pytest_summary_and_sample_grid_helpers(tmp_path):
    script = load_script()
    assert script.pytest_counts("....\n2 failed, 215 passed, 1 skipped in 99.1s\n") == {"failed": 2, "passed": 215, "skipped": 1}
    assert script.pytest_counts("1 skipped, 218 deselected in 3.20s") == {"skipped": 1, "deselected": 218}
    assert script.pytest_counts("no summary here") == {}
    # two 3-picture grids laid out as pixelcnn's save_levels_grid does (2-pixel padding, 2 per row, enlarged 4x)
    side, scale = 5, 4
    pictures = np.random.default_rng(0).integers(0, 256, size=(3, side, side, 3), dtype=np.uint8)
    changed = pictures.copy()
    changed[2, 0, 0, 1] ^= 1

    def grid(images, path):
        canvas = np.full((2 * (side + 2) + 2, 2 * (side + 2) + 2, 3), 128, dtype=np.uint8)
        for i, image in enumerate(images):
            r, c = divmod(i, 2)
            canvas[2 + r * (side + 2):2 + r * (side + 2) + side, 2 + c * (side + 2):2 + c * (side + 2) + side] = image
        Image.fromarray(canvas.repeat(scale, 0).repeat(scale, 1)).save(path)
        return path

    a, b = grid(pictures, tmp_path / "a.png"), grid(changed, tmp_path / "b.png")
    assert np.array_equal(script.tiles(a, 3, side), pictures)
    same, images = script.agreement(a, b, 3, side)
    assert images == 2 and same == 1 - 1 / pictures.size
