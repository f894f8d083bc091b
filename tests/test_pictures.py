"""Reading pictures: the one function behind the imagefolder plugin and ``sample --complete --images``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from pixelcnn_cli.images import PictureError, fit_pictures, read_picture


def test_transparent_pixels_become_white(tmp_path):
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[..., 0] = 200  # red where opaque
    pixels[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    picture = read_picture(tmp_path / "a.png", 3, 4, 4)
    assert picture.dtype == torch.uint8 and picture.shape == (3, 4, 4)
    assert picture[:, :2].tolist() == [[[200] * 4] * 2, [[0] * 4] * 2, [[0] * 4] * 2]
    assert (picture[:, 2:] == 255).all()


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 10, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")  # a 16-bit grey PNG
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")
    picture = read_picture(tmp_path / "deep.png", 1, 1, 4)
    assert picture.flatten().tolist() == [0, 10, 128, 255]  # clipping would give 0, 255, 255, 255


def test_aspect_ratio_is_kept_by_a_centre_crop(tmp_path):
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, :10] = (255, 0, 0)  # red, green and blue thirds, left to right
    pixels[:, 10:20] = (0, 255, 0)
    pixels[:, 20:] = (0, 0, 255)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    picture = read_picture(tmp_path / "wide.png", 3, 5, 5)  # the shorter side fits; the middle third stays
    assert (picture[1] > 200).all() and (picture[0] < 50).all() and (picture[2] < 50).all()


def test_colour_to_grey_and_back(tmp_path):
    Image.new("RGB", (3, 3), (255, 255, 255)).save(tmp_path / "white.png")
    Image.new("L", (3, 3), 100).save(tmp_path / "grey.png")
    assert read_picture(tmp_path / "white.png", 1, 3, 3).tolist() == [[[255] * 3] * 3]
    assert read_picture(tmp_path / "grey.png", 3, 3, 3).unique().tolist() == [100]
    pictures = torch.full((2, 1, 6, 6), 7, dtype=torch.uint8)
    assert fit_pictures(pictures, 3, 3, 3).shape == (2, 3, 3, 3)
    assert fit_pictures(pictures, 1, 6, 6) is pictures  # already right: untouched


def test_unreadable_files_name_the_file_and_the_reason(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    with pytest.raises(PictureError) as caught:
        read_picture(tmp_path / "bad.png", 3, 4, 4)
    assert "bad.png" in str(caught.value) and caught.value.reason and "bad.png" not in caught.value.reason
    with pytest.raises(PictureError, match="No such file"):
        read_picture(tmp_path / "missing.png", 3, 4, 4)


def test_written_pictures_are_readable_like_any_new_file(tmp_path):
    from pixelcnn_cli.images import save_png

    previous = os.umask(0o022)
    try:
        save_png(Image.new("L", (2, 2)), tmp_path / "a.png")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
