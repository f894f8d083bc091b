"""``pixelcnn score``: per-image likelihoods that agree with eval, labels and the marginal, --compare."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

from pixelcnn_cli import scoring
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.data.mnist_sample import MNISTSample


def error_lines(result) -> list[str]:
    assert "Traceback" not in result.stderr + result.stdout
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture
def digits(tmp_path):
    """Six test digits of mnist-sample as PNG files."""
    data = MNISTSample().load(tmp_path, False, MNISTSample.options_model())
    folder = tmp_path / "digits"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(data.test[i][0][0].numpy(), "L").save(folder / f"d{i}.png")
    return folder


def test_rows_agree_with_eval(cli, trained, tmp_path):
    result = cli("score", "-m", trained, "-o", "rows.csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "rows.csv")))
    assert len(rows) == 1000 and rows[0]["image"] == "test[0]" and rows[0]["label"] != ""
    evaluated = cli("eval", "-m", trained, "--json")
    record = json.loads(evaluated.stdout)
    mean = sum(float(r["bits_per_dim"]) for r in rows) / len(rows)
    assert mean == pytest.approx(record["bits_per_dim"], abs=1e-5)
    assert sum(float(r["nats"]) for r in rows) / len(rows) == pytest.approx(record["nats_per_image"], rel=1e-5)
    assert f"bits/dim mean {record['bits_per_dim']:.4f}" in result.stdout  # the summary, rows being in the file


def test_label_and_marginal(cli, trained, digits, tmp_path):
    per_class = []
    for y in range(10):
        result = cli("score", "-m", trained, str(digits), "--label", y, "-o", f"y{y}.jsonl")
        assert result.exit_code == 0, result.stderr
        rows = [json.loads(line) for line in open(tmp_path / f"y{y}.jsonl")]
        assert [r["label"] for r in rows] == [y] * 6
        per_class.append([r["nats"] for r in rows])
    result = cli("score", "-m", trained, str(digits), "-o", "m.jsonl")  # files have no class: the marginal
    assert result.exit_code == 0 and "uniform prior" in result.stderr
    marginal = [json.loads(line) for line in open(tmp_path / "m.jsonl")]
    assert all(r["label"] is None for r in marginal)
    for i, row in enumerate(marginal):
        terms = [-per_class[y][i] for y in range(10)]
        top = max(terms)
        expected = -(top + math.log(sum(math.exp(t - top) for t in terms)) - math.log(10))
        assert row["nats"] == pytest.approx(expected, rel=1e-6)
    assert error_lines(cli("score", "-m", trained, "--label", "10"))[0].startswith("error: --label: the model knows classes 0 to 9")
    assert "one or the other" in error_lines(cli("score", "-m", trained, "--label", "1", "--marginal"))[0]


def test_compare_tells_noise_from_digits(cli, trained, digits, tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(noise / f"n{i}.png")
    result = cli("score", "-m", trained, str(digits), "--label", "0", "--compare", str(noise), "--histogram", "h.png")
    assert result.exit_code == 0, result.stderr
    auroc = float(re.search(r"AUROC (\d\.\d+)", result.stdout).group(1))
    assert auroc == 1.0  # noise is far less likely than any digit
    with Image.open(tmp_path / "h.png") as picture:
        assert picture.format == "PNG" and picture.width > 300
        colours = {c for _, c in picture.convert("RGB").getcolors(1 << 20)}
    assert any(r > 150 and g < 150 and b < 150 for r, g, b in colours)  # the second set's bars (red)
    assert any(b > 150 and r < 150 for r, g, b in colours)  # the first set's (blue)
    # the other split of the training dataset, named by a word
    split = cli("score", "-m", trained, "--compare", "train", "--histogram", "s.png")
    assert split.exit_code == 0 and "mnist-sample train: 9000 images" in split.stderr
    assert "is not a file or folder" in error_lines(cli("score", "-m", trained, "--compare", "nowhere"))[0]


def test_unreadable_pictures_are_skipped_by_name_or_stop_the_run(cli, trained, digits):
    (digits / "broken.png").write_bytes(b"no picture here")
    result = cli("score", "-m", trained, str(digits), "--label", "0")
    assert result.exit_code == 0, result.stderr
    assert "warning: skipped" in result.stderr and "broken.png" in result.stderr
    assert len(result.stdout.strip().splitlines()) == 1 + 6  # header and the six digits
    (line,) = error_lines(cli("score", "-m", trained, str(digits), "--label", "0", "--strict"))
    assert "broken.png" in line and "--strict" in line


def test_nothing_readable_is_an_error_not_an_empty_table(cli, trained, tmp_path):
    (tmp_path / "a.png").write_bytes(b"no picture here")
    (tmp_path / "b.png").write_bytes(b"nor here")
    result = cli("score", "-m", trained, "a.png", "b.png", "--label", "0", "-o", "rows.csv")
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["warning", "warning", "error"], lines
    assert lines[-1] == "error: a.png, b.png: no image could be read (2 unreadable, each named in a warning above)"
    assert not (tmp_path / "rows.csv").exists()  # no empty table left for a script to read as a result


def test_a_long_list_of_files_is_named_by_its_first_two_and_a_count(cli, trained, digits, tmp_path, recwarn):
    files = sorted(str(p) for p in digits.iterdir())
    assert len(files) == 6
    result = cli("score", "-m", trained, *files[:3], "--compare", str(digits), "--histogram", "h.png")
    assert result.exit_code == 0, result.stderr
    summary = next(line for line in result.stderr.splitlines() if "images ·" in line)
    assert summary.startswith(f"{files[0]}, {files[1]}, {files[2]}: 3 images")  # three: named in full
    one = cli("score", "-m", trained, files[0], "--label", "0")
    assert f"{files[0]}: 1 image · " in one.stderr, one.stderr
    result = cli("score", "-m", trained, *files, "--compare", str(digits), "--histogram", "h.png")
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    summary = next(line for line in result.stderr.splitlines() if "images ·" in line)
    assert summary.startswith(f"{files[0]}, {files[1]} and 4 more: 6 images"), summary
    assert f"from {files[0]}, {files[1]} and 4 more by higher" in result.stdout
    # the histogram's title names the checkpoint by its (long) path: wrapped, the axes keep their room
    assert not [w for w in recwarn if "constrained_layout" in str(w.message)], [str(w.message) for w in recwarn]


def test_folders_are_read_a_batch_at_a_time(digits, monkeypatch):
    reads = []
    real = scoring.read_picture
    monkeypatch.setattr(scoring, "read_picture", lambda *a: reads.append(a[0]) or real(*a))
    spec = ModelSpec(1, 28, 28, 2, 10)
    batches = scoring.file_batches(scoring.picture_files([digits]), spec, 4, False, lambda e: None)
    first = next(batches)
    assert first[0].shape == (4, 1, 28, 28) and len(reads) == 4  # the rest not read yet
    assert next(batches)[0].shape == (2, 1, 28, 28) and len(reads) == 6


def test_auroc():
    assert scoring.auroc([1.0, 2.0], [3.0, 4.0]) == 1.0
    assert scoring.auroc([3.0, 4.0], [1.0, 2.0]) == 0.0
    assert scoring.auroc([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert scoring.auroc([1.0, 3.0], [2.0]) == 0.5
    x, y = torch.randn(300).tolist(), (torch.randn(200) + 1).tolist()
    pairs = sum((b > a) + 0.5 * (b == a) for a in x for b in y) / (len(x) * len(y))
    assert scoring.auroc(x, y) == pytest.approx(pairs)


def test_unconditional_models_take_no_label(cli, tmp_path):
    result = cli("train", "--dataset", "mnist-sample", "--epochs", "1", "--limit-train-batches", "2", "--batch-size", "8",
                 "--epoch-samples", "0", "--unconditional", "--run-name", "u", *TINY)
    assert result.exit_code == 0, result.stderr
    assert "unconditional" in error_lines(cli("score", "-m", "runs/u", "--label", "1"))[0]
    plain = cli("score", "-m", "runs/u", "-o", "u.csv")
    assert plain.exit_code == 0 and set(r["label"] for r in csv.DictReader(open(tmp_path / "u.csv"))) == {""}
