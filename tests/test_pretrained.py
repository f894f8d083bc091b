"""The model that ships with the package: found without any run, small, and a real class-conditional model."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image

from pixelcnn_cli import pretrained
from pixelcnn_cli.building import restore_model
from pixelcnn_cli.checkpoint import load_checkpoint
from pixelcnn_cli.data.mnist_sample import MNISTSample
from pixelcnn_cli.scoring import image_nats


def test_it_ships_and_is_small():
    path = pretrained.pretrained_path("pretrained:mnist-sample")
    assert path.is_file() and path.stat().st_size < 4 * 2**20
    checkpoint = load_checkpoint(path)
    assert "optimizer_state" not in checkpoint and "train_state" not in checkpoint  # inference only


def test_commands_use_it_when_there_is_no_run(cli, tmp_path, all_threads):
    result = cli("sample", "--label", "3", "-c", "4", "--seed", "0")
    assert result.exit_code == 0, result.stderr
    assert "using the mnist-sample model that ships with pixelcnn (-m pretrained:mnist-sample)" in result.stderr
    assert Image.open(tmp_path / "samples" / "samples.png").size[0] > 100
    recorded = load_checkpoint(pretrained.pretrained_path("mnist-sample"))["metrics"]["test_bits_per_dim"]
    evaluated = cli("eval", "-m", "pretrained:mnist-sample", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["bits_per_dim"] == pytest.approx(recorded, abs=1e-6)  # as it was shipped
    scored = cli("score", "-o", "rows.csv")  # no run: the shipped model again, each test digit under its class
    assert scored.exit_code == 0 and "ships with pixelcnn" in scored.stderr, scored.stderr
    with open(tmp_path / "rows.csv", newline="") as f:
        bits = [float(row["bits_per_dim"]) for row in csv.DictReader(f)]
    assert len(bits) == 1000 and sum(bits) / len(bits) == pytest.approx(recorded, abs=1e-5)
    assert "no pretrained model 'cifar'" in cli("eval", "-m", "pretrained:cifar").stderr


def test_its_classes_mean_something(tmp_path, all_threads):
    """Bayes' rule on the shipped model (the class with the highest p(x|y)) names most test digits:
    its samples of class 3 come from a model that knows what a 3 is."""
    checkpoint = load_checkpoint(pretrained.pretrained_path("mnist-sample"))
    model, spec, _ = restore_model(checkpoint, torch.device("cpu"))
    model.eval()
    data = MNISTSample().load(tmp_path, False, MNISTSample.options_model())
    # 100 digits: 96 of them are named right (94.5% of the first 200), far from the 80% asked
    images = torch.stack([data.test[i][0] for i in range(100)])
    truth = torch.tensor([int(data.test[i][1]) for i in range(100)])
    nats = torch.stack([image_nats(model, images, torch.full((100,), y), spec) for y in range(10)])
    accuracy = float((nats.argmin(0) == truth).double().mean())
    assert accuracy > 0.8, accuracy
