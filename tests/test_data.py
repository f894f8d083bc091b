"""Data: quantisation, the bundled mnist-sample, torchvision's MNIST / Fashion-MNIST / CIFAR-10
read from files in their real formats (offline), clear errors for missing data, and batching."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset

from conftest import TINY
from formats import (
    CIFAR_FOLDER,
    CIFAR_LABEL_NAMES,
    MNIST_FILES,
    cifar10_md5_lists,
    write_cifar10,
    write_idx,
    write_mnist_idx,
)
from pixelcnn_cli import registry
from pixelcnn_cli.checkpoint import load_checkpoint
from pixelcnn_cli.contracts import TensorImageDataset
from pixelcnn_cli.data.idx import read_idx
from pixelcnn_cli.data.batches import make_loader
from pixelcnn_cli.data.quantize import levels_to_input, levels_to_uint8, to_levels
from pixelcnn_cli.errors import DataError

KNOWN_DATASETS = ("mnist", "fashionmnist", "cifar", "cifar10", "mnist-sample")


def load(name: str, root: Path, download: bool = False):
    return registry.datasets.get(name).load(Path(root), download=download)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_one_clean_error(result) -> str:
    """A non-zero exit with exactly one ``error:`` line on stderr and no traceback; returns that line."""
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def cifar_files(tmp_path, monkeypatch):
    """CIFAR-10 pickles under tmp/data, with torchvision told the md5 sums of these files."""
    written = write_cifar10(tmp_path / "data")
    train_list, test_list, meta = cifar10_md5_lists(written)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "test_list", test_list)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "meta", meta)
    return written


@pytest.fixture
def unreachable_downloads(monkeypatch):
    """Point every download URL at a closed local port: a download fails at once, here or online."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/"
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [dead])
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", [dead])
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", dead + "cifar-10-python.tar.gz")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)  # a bound on any connection attempt, should the port answer after all
    yield
    socket.setdefaulttimeout(previous)


# -- quantisation ------------------------------------------------------------------------------

ALL_VALUES = torch.arange(256, dtype=torch.uint8)


def test_to_levels_is_the_identity_for_256_levels():
    levels = to_levels(ALL_VALUES, 256)
    assert levels.dtype == torch.long
    assert torch.equal(levels, torch.arange(256))


def test_to_levels_thresholds_at_128_for_2_levels():
    levels = to_levels(ALL_VALUES, 2)
    assert torch.equal(levels[:128], torch.zeros(128, dtype=torch.long))
    assert torch.equal(levels[128:], torch.ones(128, dtype=torch.long))


def test_to_levels_has_equal_width_bins_for_4_levels():
    levels = to_levels(ALL_VALUES, 4)
    for k, (lo, hi) in enumerate([(0, 63), (64, 127), (128, 191), (192, 255)]):
        assert (levels[lo : hi + 1] == k).all(), (k, levels[lo : hi + 1])
    assert torch.equal(torch.bincount(levels), torch.full((4,), 64))


@pytest.mark.parametrize("color_levels", [2, 3, 4, 5, 7, 8, 10, 16, 64, 100, 255, 256])
def test_to_levels_reaches_every_level_with_bins_as_equal_as_possible(color_levels):
    levels = to_levels(ALL_VALUES, color_levels)
    assert levels.min() == 0 and levels.max() == color_levels - 1
    assert (levels.diff() >= 0).all() and (levels.diff() <= 1).all()  # monotone, no level skipped
    counts = torch.bincount(levels, minlength=color_levels)
    assert (counts > 0).all()
    assert counts.max() - counts.min() <= 1
    assert torch.equal(levels, torch.div(torch.arange(256) * color_levels, 256, rounding_mode="floor"))


def test_to_levels_works_on_whole_batches():
    images = torch.randint(0, 256, (5, 3, 7, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    levels = to_levels(images, 4)
    assert levels.shape == images.shape
    assert torch.equal(levels, images.long() // 64)


@pytest.mark.parametrize("color_levels, expected", [
    (2, [0, 255]),
    (3, [0, 128, 255]),  # 127.5 rounds half to even: 128
    (4, [0, 85, 170, 255]),
    (5, [0, 64, 128, 191, 255]),  # 63.75, 127.5, 191.25
])
def test_levels_to_uint8_spreads_levels_over_0_to_255(color_levels, expected):
    shown = levels_to_uint8(torch.arange(color_levels), color_levels)
    assert shown.dtype == torch.uint8
    assert shown.tolist() == expected


@pytest.mark.parametrize("color_levels", [2, 4, 7, 16, 100, 256])
def test_levels_to_uint8_is_round_k_255_over_levels_minus_one(color_levels):
    k = torch.arange(color_levels)
    shown = levels_to_uint8(k.view(1, 1, 1, -1), color_levels)
    assert shown.shape == (1, 1, 1, color_levels)
    expected = [round(v * 255 / (color_levels - 1)) for v in range(color_levels)]
    assert shown.flatten().tolist() == expected
    assert shown.flatten()[0] == 0 and shown.flatten()[-1] == 255


@pytest.mark.parametrize("color_levels", [2, 4, 8, 16, 32, 64, 128, 256])
def test_shown_levels_quantise_back_to_themselves(color_levels):
    k = torch.arange(color_levels)
    assert torch.equal(to_levels(levels_to_uint8(k, color_levels), color_levels), k)


@pytest.mark.parametrize("color_levels", [2, 3, 4, 256])
def test_levels_to_input_maps_to_minus_one_to_one(color_levels):
    x = levels_to_input(torch.arange(color_levels), color_levels)
    assert x.dtype == torch.float32
    assert x[0].item() == pytest.approx(-1.0)
    assert x[-1].item() == pytest.approx(1.0)
    steps = x.diff()
    assert torch.allclose(steps, torch.full_like(steps, 2.0 / (color_levels - 1)), rtol=0, atol=1e-6)
    assert levels_to_input(torch.arange(color_levels), color_levels, torch.float64).dtype == torch.float64


# -- the IDX reader ------------------------------------------------------------------------------

@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_reads_plain_and_gzipped_files(tmp_path, gzipped):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("x-idx3-ubyte" + (".gz" if gzipped else "")), array, gzipped=gzipped)
    assert torch.equal(read_idx(path), torch.from_numpy(array))


def test_read_idx_refuses_a_file_of_another_type(tmp_path):
    path = tmp_path / "ints-idx1"
    path.write_bytes(b"\x00\x00\x0c\x01" + (2).to_bytes(4, "big") + b"\x00" * 8)  # 0x0C: int32
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(path)


# -- mnist-sample ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_sample():
    return registry.datasets.get("mnist-sample").load(Path("unused"), download=False)


def test_mnist_sample_shapes_and_split(mnist_sample):
    data = mnist_sample
    assert (data.channels, data.height, data.width) == (1, 28, 28)
    assert data.classes == [str(d) for d in range(10)] and data.num_classes == 10
    train, test = data.train, data.test
    assert (len(train), len(test)) == (9000, 1000)
    for split in (train, test):
        assert split.images.shape[1:] == (1, 28, 28) and split.images.dtype == torch.uint8
        assert split.labels.dtype == torch.long
        assert split.labels.min() == 0 and split.labels.max() == 9
    assert torch.equal(torch.bincount(test.labels, minlength=10), torch.full((10,), 100))
    train_counts = torch.bincount(train.labels, minlength=10)
    assert train_counts.sum() == 9000 and (train_counts > 700).all()
    image, label = train[0]
    assert image.shape == (1, 28, 28) and isinstance(label, int)


def test_mnist_sample_holds_real_digits(mnist_sample):
    images = torch.cat([mnist_sample.train.images, mnist_sample.test.images]).float()
    labels = torch.cat([mnist_sample.train.labels, mnist_sample.test.labels])
    assert 20 < images.mean() < 50  # MNIST: about 33 of 255
    ink = (images > 0).float().mean()
    assert 0.12 < ink < 0.28  # about a fifth of the pixels carry ink
    frame = torch.ones(28, 28, dtype=torch.bool)
    frame[3:-3, 3:-3] = False
    assert images[:, 0, frame].mean() < 1.0  # digits sit in the middle, the border is black
    flat = images.flatten(1)
    assert len(torch.unique(flat, dim=0)) > 0.99 * len(flat)  # no blank or repeated filler
    per_class_ink = torch.stack([images[labels == d].mean() for d in range(10)])
    assert per_class_ink.argmin() == 1  # a "1" uses the least ink of any digit
    # each class looks like itself: its mean image is nearer its own test images than other classes' are
    means = torch.stack([mnist_sample.train.images[mnist_sample.train.labels == d].float().mean(0).flatten()
                         for d in range(10)])
    test_flat = mnist_sample.test.images.float().flatten(1)
    nearest = torch.cdist(test_flat, means).argmin(1)
    assert (nearest == mnist_sample.test.labels).float().mean() > 0.7  # nearest class mean: ~80% on MNIST


def test_mnist_sample_is_the_same_every_time(mnist_sample):
    again = registry.datasets.get("mnist-sample").load(Path("elsewhere"), download=True)
    assert torch.equal(again.train.images, mnist_sample.train.images)
    assert torch.equal(again.train.labels, mnist_sample.train.labels)
    assert torch.equal(again.test.images, mnist_sample.test.images)
    assert torch.equal(again.test.labels, mnist_sample.test.labels)
    assert not torch.equal(mnist_sample.train.images[:1000], mnist_sample.test.images)


# -- torchvision sets from real-format files ---------------------------------------------------

@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_mnist_formats_load_exactly_what_was_written(tmp_path, name, folder):
    written = write_mnist_idx(tmp_path / "data", folder=folder, n_train=64, n_test=40, seed=3)
    data = load(name, tmp_path / "data")
    assert (data.channels, data.height, data.width) == (1, 28, 28)
    assert data.num_classes == 10
    for split, expected in ((data.train, written.train), (data.test, written.test)):
        assert split.images.dtype == torch.uint8
        assert split.images.shape == expected.images.shape
        assert torch.equal(split.images, expected.images)
        assert torch.equal(split.labels, expected.labels)
    assert len(data.train) == 64 and len(data.test) == 40


def test_fashionmnist_has_its_own_folder_and_classes(tmp_path):
    write_mnist_idx(tmp_path / "data", folder="FashionMNIST")
    data = load("fashionmnist", tmp_path / "data")
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    with pytest.raises(DataError, match="MNIST"):  # MNIST's own folder is still empty
        load("mnist", tmp_path / "data")


@pytest.mark.parametrize("name", ["cifar", "cifar10"])
def test_cifar_loads_pickles_with_the_right_pixel_order(cifar_files, name):
    data = load(name, cifar_files.root)
    assert (data.channels, data.height, data.width) == (3, 32, 32)
    assert data.classes == CIFAR_LABEL_NAMES
    assert (len(data.train), len(data.test)) == (50, 14)
    images = data.train.images
    assert images.dtype == torch.uint8 and images.shape == (50, 3, 32, 32)
    assert images[0, :, 2, 5].tolist() == [10, 200, 77]  # (R, G, B) at row 2, column 5
    assert images[0, :, 5, 2].tolist() == [1, 2, 3]  # not transposed
    # every pixel: channel c, row r, column x is byte c * 1024 + r * 32 + x of the stored row
    for split, rows in ((data.train, cifar_files.train_rows), (data.test, cifar_files.test_rows)):
        c, r, x = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
        expected = rows[:, c * 1024 + r * 32 + x]
        assert torch.equal(split.images, torch.from_numpy(expected))
    assert torch.equal(data.train.labels, cifar_files.train.labels)
    assert torch.equal(data.test.labels, cifar_files.test.labels)


def test_cifar_class_names_come_from_batches_meta(tmp_path, monkeypatch):
    names = [f"kind-{i}" for i in range(10)]
    written = write_cifar10(tmp_path / "data", label_names=names)
    for attr, value in zip(("train_list", "test_list", "meta"), cifar10_md5_lists(written)):
        monkeypatch.setattr(torchvision.datasets.CIFAR10, attr, value)
    assert load("cifar", tmp_path / "data").classes == names


def test_cifar_files_failing_the_checksum_are_a_clear_error(tmp_path):
    write_cifar10(tmp_path / "data")  # torchvision still expects the real data set's md5 sums
    with pytest.raises(DataError) as caught:
        load("cifar", tmp_path / "data")
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "data" / CIFAR_FOLDER) in message and "corrupted" in message


# -- missing or broken files -----------------------------------------------------------------

@pytest.mark.parametrize("name, folder, files", [
    ("mnist", "MNIST/raw", MNIST_FILES),
    ("fashionmnist", "FashionMNIST/raw", MNIST_FILES),
    ("cifar", CIFAR_FOLDER, ("data_batch_1", "test_batch", "batches.meta")),
    ("cifar10", CIFAR_FOLDER, ("data_batch_1", "test_batch", "batches.meta")),
])
def test_missing_files_without_download_are_one_clear_line(tmp_path, name, folder, files):
    empty = tmp_path / "empty"
    with pytest.raises(DataError) as caught:
        load(name, empty, download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert str(empty / folder) in message
    for file in files:
        assert file in message
    assert "--no-download" in message
    assert "--dataset mnist-sample" in message
    assert not empty.exists()  # nothing was created while looking


def test_unreadable_idx_file_is_a_data_error(tmp_path):
    written = write_mnist_idx(tmp_path / "data", n_train=16, n_test=16)
    (written.folder / "train-images-idx3-ubyte").write_bytes(b"this is not an IDX file")
    with pytest.raises(DataError, match="unreadable"):
        load("mnist", tmp_path / "data")


def test_cli_train_on_missing_mnist_without_download(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("train", "--dataset", "mnist", "--no-download", "--data-dir", str(empty), "--run-name", "r", *TINY)
    line = assert_one_clean_error(result)
    assert str(empty / "MNIST" / "raw") in line
    assert "train-images-idx3-ubyte" in line and "t10k-labels-idx1-ubyte" in line
    assert "--dataset mnist-sample" in line
    assert not (tmp_path / "runs").exists()  # no half-made run folder


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST/raw"), ("cifar", CIFAR_FOLDER)])
def test_failed_download_is_one_clear_line(cli, tmp_path, unreachable_downloads, name, folder):
    data_dir = tmp_path / "data"
    result = cli("train", "--dataset", name, "--download", "--data-dir", str(data_dir), "--run-name", "r", *TINY)
    line = assert_one_clean_error(result)
    assert "download failed" in line
    assert str(data_dir / folder) in line
    assert "--dataset mnist-sample" in line
    assert not (tmp_path / "runs").exists()


def test_unknown_dataset_lists_the_known_ones(cli, tmp_path):
    result = cli("train", "--dataset", "imagenet-1k", "--no-download", *TINY)
    line = assert_one_clean_error(result)
    assert "imagenet-1k" in line
    available = line.split("available:", 1)[1]
    listed = {name.strip() for name in available.split(",")}
    assert set(KNOWN_DATASETS) <= listed
    assert not (tmp_path / "runs").exists()


# -- tiny training runs on the fixtures ----------------------------------------------------------

def assert_run_written(run_dir: Path, dataset: str):
    best = run_dir / "checkpoints" / "best.pt"
    assert best.is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["dataset"] == dataset
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(metrics) == 1 and math.isfinite(metrics[0]["test_bits_per_dim"])
    pngs = sorted((run_dir / "samples").glob("*.png"))
    assert pngs, "no sample grid written"
    with Image.open(pngs[0]) as picture:
        picture.verify()
    return load_checkpoint(best), config


def test_train_on_mnist_idx_files(cli, tmp_path):
    write_mnist_idx(tmp_path / "data", n_train=48, n_test=16)
    result = cli("train", "--dataset", "mnist", "--no-download", "--data-dir", str(tmp_path / "data"),
                 "--epochs", "1", "--epoch-samples", "1", "--batch-size", "16", "--limit-train-batches", "2",
                 "--seed", "0", "--run-name", "idx", *TINY)
    assert result.exit_code == 0, result.stderr + result.stdout
    checkpoint, config = assert_run_written(tmp_path / "runs" / "idx", "mnist")
    spec = checkpoint["spec"]
    assert (spec["channels"], spec["height"], spec["width"], spec["num_classes"]) == (1, 28, 28, 10)
    assert config["spec"] == spec


def test_train_on_cifar_pickles(cli, tmp_path, cifar_files):
    result = cli("train", "--dataset", "cifar", "--no-download", "--data-dir", str(cifar_files.root),
                 "--epochs", "1", "--epoch-samples", "1", "--batch-size", "16", "--limit-train-batches", "2",
                 "--seed", "0", "--run-name", "rgb", *TINY)
    assert result.exit_code == 0, result.stderr + result.stdout
    checkpoint, _ = assert_run_written(tmp_path / "runs" / "rgb", "cifar")
    spec = checkpoint["spec"]
    assert (spec["channels"], spec["height"], spec["width"], spec["num_classes"]) == (3, 32, 32, 10)
    assert spec["class_names"] == CIFAR_LABEL_NAMES


# -- batching ----------------------------------------------------------------------------------

def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_loader_batches_a_tensor_dataset_in_order():
    images, labels = _images(10), torch.arange(10) % 3
    batches = list(make_loader(TensorImageDataset(images, labels), batch_size=4, shuffle=False))
    assert [len(b[0]) for b in batches] == [4, 4, 2]  # the last, partial batch is kept
    for i, (x, y) in enumerate(batches):
        assert x.dtype == torch.uint8 and y.dtype == torch.long
        assert torch.equal(x, images[4 * i : 4 * i + 4]) and torch.equal(y, labels[4 * i : 4 * i + 4])


def test_loader_shuffle_is_a_seeded_permutation():
    images, labels = _images(32), torch.arange(32)

    def order(seed):
        return torch.cat([y for _, y in make_loader(TensorImageDataset(images, labels), 8, True, seed)])

    first = order(7)
    assert sorted(first.tolist()) == list(range(32))
    assert torch.equal(first, order(7))
    assert not torch.equal(first, order(8))
    assert not torch.equal(first, torch.arange(32))
    x, y = next(iter(make_loader(TensorImageDataset(images, labels), 8, True, 7)))
    assert torch.equal(x, images[y])  # images travel with their labels


def test_tensor_dataset_without_labels_gives_zeros_and_refuses_non_uint8():
    x, y = next(iter(make_loader(TensorImageDataset(_images(3)), 3, False)))
    assert torch.equal(y, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="uint8"):
        TensorImageDataset(_images(3).float())


class ItemDataset(Dataset):
    """A plain map-style dataset of ``(tensor, int)`` items, as a third-party plugin may return."""

    def __init__(self, images: torch.Tensor, labels: list[int]):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


def test_loader_batches_a_generic_dataset_of_uint8_items():
    images, labels = _images(6, seed=1), [5, 0, 2, 9, 1, 3]
    batches = list(make_loader(ItemDataset(images, labels), batch_size=4, shuffle=False))
    assert len(batches) == 2
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape == (4, 1, 4, 4) and torch.equal(x, images[:4])
    assert y.dtype == torch.long and y.tolist() == [5, 0, 2, 9]
    assert batches[1][1].tolist() == [1, 3]


def test_loader_refuses_float_images_with_a_clear_error():
    floats = ItemDataset(_images(4).float() / 255, [0, 1, 2, 3])
    with pytest.raises(DataError, match=r"uint8.*float32"):
        next(iter(make_loader(floats, batch_size=2, shuffle=False)))
