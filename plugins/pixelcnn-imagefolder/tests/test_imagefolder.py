"""The ``imagefolder`` dataset plugin, on PNG and JPEG files written by Pillow into a temporary folder."""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, distribution

import pytest
import torch
from PIL import Image

try:
    distribution("pixelcnn-imagefolder")
except PackageNotFoundError:  # pragma: no cover - the README's install command installs it
    pytest.skip("pixelcnn-imagefolder is not installed (pip install -e plugins/pixelcnn-imagefolder)", allow_module_level=True)

from typer.testing import CliRunner  # noqa: E402

from pixelcnn_cli import registry  # noqa: E402
from pixelcnn_cli.cli.app import app  # noqa: E402
from pixelcnn_cli.errors import DataError  # noqa: E402
from pixelcnn_imagefolder import ImageFolder, ImageFolderOptions, ImageFolderWarning, UnreadableImagesWarning  # noqa: E402

TINY = ["--hidden-fmaps", "6", "--out-hidden-fmaps", "6", "--hidden-layers", "1", "--causal-ksize", "3", "--hidden-ksize", "3"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(registry.DISABLE_ENV, raising=False)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    registry.datasets.reset()
    registry.models.reset()
    yield
    registry.datasets.reset()
    registry.models.reset()


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def picture(path, size, colour, mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, fmt)
    return path


@pytest.fixture
def pets(tmp_path):
    """Two classes, RGB and grey, PNG and JPEG, odd sizes, a transparent palette image, one corrupt file and some noise."""
    root = tmp_path / "pets"
    for i in range(4):
        picture(root / "cats" / f"cat{i}.png", (12 + i, 10), (200, 30 * i, 10))
    picture(root / "cats" / "nested" / "cat-big.JPG", (40, 30), (250, 250, 250), fmt="JPEG")
    for i in range(3):
        picture(root / "dogs" / f"dog{i}.jpeg", (9, 16), 60 + 40 * i, mode="L", fmt="JPEG")
    palette = Image.new("P", (10, 10), 0)
    palette.info["transparency"] = 0
    palette.save(root / "dogs" / "see-through.png")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    (root / "dogs" / "notes.txt").write_text("not an image, not reported")
    picture(root / ".thumbnails" / "hidden.png", (8, 8), (0, 0, 0))
    picture(root / "empty-class" / "readme.md", (1, 1), (0, 0, 0), fmt="PNG")  # a non-image name: ignored
    return root


def load(root, **options) -> "ImageData":  # noqa: F821
    return ImageFolder().load(root, False, ImageFolderOptions(root=str(root), **options))


def stacked(split):
    return torch.stack([split[i][0] for i in range(len(split))]), [split[i][1] for i in range(len(split))]


def test_discovered_through_its_entry_point():
    entry = registry.datasets.entry("imagefolder")
    assert entry is not None and entry.distribution == "pixelcnn-imagefolder"
    assert entry.value == "pixelcnn_imagefolder:ImageFolder"
    assert isinstance(registry.datasets.get("imagefolder"), ImageFolder)


def test_class_folders_rgb_and_grey_with_a_corrupt_file(pets):
    with pytest.warns(UnreadableImagesWarning, match=r"skipped 1 unreadable file\(s\) of 10 in .*: dogs/broken.png \("):
        data = load(pets, height=8, width=6)
    assert (data.channels, data.height, data.width) == (3, 8, 6)
    assert data.classes == ["cats", "dogs"]  # sorted folder names; hidden and image-less folders are no classes
    assert len(data.train) + len(data.test) == 9 and len(data.test) == 1  # round(9 * 0.1)
    images, labels = stacked(data.train)
    test_images, test_labels = stacked(data.test)
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 8, 6)
    assert sorted(labels + test_labels) == [0] * 5 + [1] * 4
    everything = torch.cat([images, test_images])
    grey = everything[torch.tensor(labels + test_labels) == 1]
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])  # grey JPEGs become R = G = B
    assert (everything == 255).all(dim=(1, 2, 3)).sum() >= 1  # transparency composited on white

    with pytest.warns(UnreadableImagesWarning):
        grey_data = load(pets, height=8, width=8, mode="grey")
    assert grey_data.channels == 1 and grey_data.train[0][0].shape == (1, 8, 8)


def test_resized_by_the_shorter_side_then_centre_cropped(tmp_path):
    root = tmp_path / "wide"
    image = Image.new("RGB", (30, 10), (0, 0, 255))  # blue bands left and right of a red 10x10 centre
    image.paste((255, 0, 0), (10, 0, 20, 10))
    image.save(picture(root / "a.png", (1, 1), 0))
    picture(root / "b.png", (4, 4), (0, 255, 0))
    data = load(root, height=5, width=5, test_fraction=0.5)
    images = torch.cat([stacked(data.train)[0], stacked(data.test)[0]])
    centre = next(img for img in images if img[0].float().mean() > 128)
    assert (centre[0] >= 230).all() and (centre[2] <= 25).all()  # only the red centre survives the crop
    assert data.classes is None  # files directly in root: unlabelled


def test_the_held_out_split_is_fixed_by_the_seed(tmp_path):
    root = tmp_path / "digits"
    for i in range(20):
        picture(root / f"{i:02d}.png", (4, 4), (i * 10, 0, 0))
    first = stacked(load(root, height=4, width=4, test_fraction=0.25).test)[0]
    again = stacked(load(root, height=4, width=4, test_fraction=0.25).test)[0]
    other = stacked(load(root, height=4, width=4, test_fraction=0.25, seed=1).test)[0]
    assert len(first) == 5 and torch.equal(first, again) and not torch.equal(first, other)


def test_loose_files_beside_class_folders_are_ignored_with_a_warning(pets):
    picture(pets / "loose.png", (8, 8), (1, 2, 3))
    with pytest.warns(ImageFolderWarning) as caught:
        data = load(pets, height=4, width=4)
    messages = [str(w.message) for w in caught]
    assert any("1 image(s) directly in" in m and "ignored" in m for m in messages), messages
    assert len(data.train) + len(data.test) == 9


def test_folders_that_cannot_make_a_dataset(tmp_path):
    with pytest.raises(DataError, match="imagefolder: root folder not found: .*missing"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="imagefolder: no images"):
        load(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="0 readable image"), pytest.warns(UnreadableImagesWarning):
        load(tmp_path / "bad")
    with pytest.raises(DataError, match="not a file"):
        load(tmp_path / "bad" / "x.jpg")


def test_options_are_validated_by_the_plugin():
    assert ImageFolderOptions(root=2024).root == "2024"  # a folder named by a number, as YAML reads it
    assert ImageFolderOptions(root="x", mode="Gray").mode == "grey"
    for bad in ({"root": "x", "mode": "cmyk"}, {"root": "x", "test_fraction": 1}, {"root": "x", "size": 3}, {}):
        with pytest.raises(ValueError):
            ImageFolderOptions(**bad)


def test_cli_errors_are_one_line(pets):
    cases = [
        (["--dataset-option", "height=8"], "error: dataset_options.root: Field required"),
        (["--dataset-option", f"root={pets}", "--dataset-option", "mode=cmyk"], "error: dataset_options.mode: Input should be 'grey' or 'rgb'"),
        (["--dataset-option", "root=nowhere"], "error: imagefolder: root folder not found: nowhere"),
    ]
    for options, message in cases:
        result = cli("train", "--dataset", "imagefolder", *options, "--epochs", "1", *TINY)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code != 0 and "Traceback" not in result.stdout + result.stderr
        assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_train_sample_and_eval_on_your_own_pictures(pets, tmp_path):
    with pytest.warns(UnreadableImagesWarning, match="broken.png"):
        result = cli("train", "--dataset", "imagefolder", "--dataset-option", f"root={pets}", "--dataset-option", "height=8",
                     "--dataset-option", "width=8", "--epochs", "1", "--batch-size", "4", "--epoch-samples", "0",
                     "--color-levels", "4", "--run-name", "pets", "--seed", "0", *TINY)
    assert result.exit_code == 0, result.stderr + result.stdout
    run = tmp_path / "runs" / "pets"
    saved = json.loads((run / "config.json").read_text())
    assert saved["spec"] == {"channels": 3, "height": 8, "width": 8, "color_levels": 4, "num_classes": 2, "class_names": ["cats", "dogs"], "codes": False,
                             "condition_codes": 0, "condition_height": 0, "condition_width": 0}
    assert saved["plugins"]["dataset"] == {"name": "imagefolder", "distribution": "pixelcnn-imagefolder", "version": "0.1.0"}

    checkpoint = run / "checkpoints" / "best.pt"
    result = cli("sample", "-m", checkpoint, "--label", "1", "-c", "2", "--output-fname", "dogs.png")
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "dogs.png").size[0] > 8
    with pytest.warns(UnreadableImagesWarning):
        result = cli("eval", "-m", checkpoint, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 1
