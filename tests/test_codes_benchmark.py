"""benchmarks/codes.py runs (tiny settings: 8x8 maps, one model, a small file) and its figures make sense."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def load_script(name):
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as tests/test_sampling.py loads the other benchmarks
    spec.loader.exec_module(module)
    return module


def test_codes_benchmark_runs(capsys, tmp_path):
    script = load_script("codes")
    # one model keeps it to seconds (each model and each file opening is a fresh process that imports torch)
    assert script.main(["--model", "pixelsnail", "--size", "8", "--classes", "3", "--steps", "1", "--warmup", "0",
                        "--batch-size", "2", "--sample-count", "2", "--naive-pixels", "1", "--maps", "100",
                        "--workdir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["maps"] == "1x8x8, 512 codes, 3 classes"
    (model,) = report["models"]
    assert "error" not in model and model["model"] == "pixelsnail" and model["parameters"] > 0
    train, sample = model["train"], model["sample"]
    assert train["maps_per_second"] > 0 and train["ms_per_map"] > 0 and train["peak_rss_mib"] > 0
    assert 5 < train["loss_first"] < 8  # about ln 512 = 6.24 at random weights
    assert sample["cached_seconds"] > 0 and sample["codes_per_second"] > 0
    assert sample["naive_extrapolated"] and sample["naive_pixels_measured"] == 1 and sample["naive_over_cached"] > 0
    data = report["data"]
    assert [f["file"] for f in data["files"]] == ["codes.npy", "codes.npz"]
    for f in data["files"]:
        assert "error" not in f, f
        assert f["bytes"] >= 100 * 8 * 8 * 2 and f["open_seconds"] > 0
        assert f["train_maps"] + f["test_maps"] == 100 and f["peak_rss_mib"] > 0
    assert not list(tmp_path.iterdir())  # the files are removed without --keep
