"""The worked example of the README's "Priors over codes": examples/digit_codes.py fits a codebook
to the bundled digits, its maps train a prior through the CLI, and sampled maps decode to pictures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digit_codes.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("digit_codes", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_patches_cut_a_digit_into_a_7x7_map_and_back(example):
    images = torch.rand(3, 28, 28)
    cells = example.patches(images)
    assert cells.shape == (3, 7, 7, 16)
    assert torch.equal(cells[1, 2, 5], images[1, 8:12, 20:24].reshape(-1))  # patch (2, 5) is rows 8..11, columns 20..23
    assert torch.equal(example.unpatch(cells), images)


def test_kmeans_finds_separated_clusters(example):
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    points = torch.cat([c + 0.1 * torch.randn(200, 2, generator=generator) for c in centres])
    found = example.kmeans(points, 3, 10, torch.Generator().manual_seed(1))
    assert torch.cdist(centres, found).min(dim=1).values.max() < 0.05  # every true centre found


def test_the_example_runs_end_to_end(example, cli, tmp_path, capsys):
    folder = tmp_path / "digit-codes"
    assert example.main(["fit", str(folder), "--codes", "16", "--iterations", "3", "--limit", "200"]) == 0
    said = capsys.readouterr().out
    assert "train: 200 digits -> (7, 7) maps of 16 codes" in said
    train = np.load(folder / "train.npz")
    assert train["codes"].shape == (200, 7, 7) and int(train["num_codes"]) == 16 and train["codes"].max() < 16
    error = float(said.split("decoded mean squared error ")[1].split()[0])
    assert error < 0.05  # the maps keep the digits (their mean square is about 0.1)
    both = float(said.split("of its residual ")[1].split()[0])
    assert both < error / 2  # the bottom level adds what the top one misses
    bottom = np.load(folder / "bottom-train.npz")
    assert bottom["codes"].shape == (200, 14, 14) and np.array_equal(bottom["condition"], train["codes"])
    trained = cli("train", "--dataset", "codes", "--dataset-option", f"path={folder / 'train.npz'}",
                  "--dataset-option", f"test_path={folder / 'test.npz'}", "--epochs", "1", "--epoch-samples", "0",
                  "--device", "cpu", "--run-name", "digit-prior", *TINY)
    assert trained.exit_code == 0, trained.stderr
    sampled = cli("sample", "-m", tmp_path / "runs" / "digit-prior", "--label", "3", "-c", "4", "-o", str(folder / "threes.png"))
    assert sampled.exit_code == 0, sampled.stderr
    assert example.main(["decode", str(folder / "threes.npy"), "--codebook", str(folder / "codebook.npy")]) == 0
    decoded = Image.open(folder / "threes-decoded.png")
    assert decoded.mode == "L" and decoded.size == (3 * (4 * 30 + 2), 3 * 32)  # 4 digits of 28 + 2 gaps, scaled 3x
    lower = cli("train", "--dataset", "codes", "--dataset-option", f"path={folder / 'bottom-train.npz'}",
                "--dataset-option", f"test_path={folder / 'bottom-test.npz'}", "--epochs", "1", "--epoch-samples", "0",
                "--device", "cpu", "--run-name", "digit-bottom", *TINY)
    assert lower.exit_code == 0, lower.stderr
    sampled = cli("sample", "-m", tmp_path / "runs" / "digit-bottom", "--label", "3", "-c", "4",
                  "--condition", str(folder / "threes.npy"), "-o", str(folder / "bottom.png"))
    assert sampled.exit_code == 0, sampled.stderr
    assert np.load(folder / "bottom.npy").shape == (4, 14, 14)
    assert example.main(["decode", str(folder / "threes.npy"), "--codebook", str(folder / "codebook.npy"),
                         "--bottom", str(folder / "bottom.npy"), "-o", str(folder / "both.png")]) == 0
    top_only = np.asarray(Image.open(folder / "threes-decoded.png"))
    with_bottom = np.asarray(Image.open(folder / "both.png"))
    assert with_bottom.shape == top_only.shape and not np.array_equal(with_bottom, top_only)
    with pytest.raises(SystemExit, match="holds 4 maps for 1 top maps"):
        np.save(folder / "one.npy", np.load(folder / "threes.npy")[:1])
        example.main(["decode", str(folder / "one.npy"), "--codebook", str(folder / "codebook.npy"), "--bottom",
                      str(folder / "bottom.npy")])
    with pytest.raises(SystemExit, match="codes in 0..15"):
        np.save(folder / "bad.npy", np.full((1, 7, 7), 16))
        example.main(["decode", str(folder / "bad.npy"), "--codebook", str(folder / "codebook.npy")])
