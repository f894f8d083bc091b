"""Pictures of samples: one named row per class, the generation as a movie, readable scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_sampling import checkpoints, one_line_error  # noqa: F401  (a fixture, shared)

from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.images import BLANK, default_scale, generation_frames, render_grid, save_animation
from pixelcnn_cli.sampling import per_class_labels


def frames_of(path):
    with Image.open(path) as movie:
        frames = []
        for i in range(movie.n_frames):
            movie.seek(i)
            frames.append(np.array(movie.convert("RGB")))
        return frames


def test_per_class_rows_are_named_and_in_class_order(cli, checkpoints, tmp_path):
    labels, names = per_class_labels(ModelSpec(1, 28, 28, 2, 3, class_names=["cat", "dog", "emu"]), 2)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2] and names == ["cat", "dog", "emu"]
    result = cli("sample", "-m", checkpoints["cond"], "--per-class", "-c", "3", "--seed", "1", "--scale", "2",
                 "--output-fname", "pc.png")
    assert result.exit_code == 0, result.stderr
    assert "wrote 30 samples" in result.stdout
    picture = np.array(Image.open(tmp_path / "pc.png").convert("L"))
    grid_width = (3 * 30 + 2) * 2
    assert picture.shape[0] == (10 * 30 + 2) * 2 and picture.shape[1] > grid_width
    margin = picture[:, : picture.shape[1] - grid_width]
    for row in range(10):  # each row's name is written in the margin, level with the row
        middle = (2 + row * 30 + 14) * 2
        assert (margin[middle - 6: middle + 6] < 100).any(), row
    one_line_error(cli("sample", "-m", checkpoints["uncond"], "--per-class"), "--per-class", "unconditional")
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--per-class", "--label", "2"), "--per-class", "--label")
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--per-class", "--complete"), "--per-class", "--complete")


def test_the_movie_ends_on_the_still_grid(cli, checkpoints, tmp_path):
    result = cli("sample", "-m", checkpoints["cond"], "-c", "4", "--seed", "3", "--output-fname", "still.png",
                 "--animate", "gen.gif", "--frame-every", "100")
    assert result.exit_code == 0, result.stderr
    frames = frames_of(tmp_path / "gen.gif")
    assert len(frames) == len(range(0, 28 * 28, 100)) + 1
    still = np.array(Image.open(tmp_path / "still.png").convert("RGB"))
    assert np.array_equal(frames[-1], still)  # grey levels survive a GIF palette exactly
    assert (frames[0] == BLANK).all()  # nothing drawn yet
    drawn = [int((f != BLANK).any(axis=2).sum()) for f in frames]
    assert drawn == sorted(drawn) and drawn[-1] > drawn[1] > 0  # filling in, never undone
    with Image.open(tmp_path / "gen.gif") as movie:
        movie.seek(movie.n_frames - 1)
        assert movie.info["duration"] >= 1000  # the last frame is held
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--animate", "gen.mp4"), ".gif or .png")
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--output-fname", "a.png", "--animate", "a.png"), "--animate")
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--frame-every", "3"), "--frame-every", "--animate")


def test_an_animated_png_keeps_every_rgb_colour(tmp_path):
    pictures = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    frames = generation_frames(pictures, every=7, nrow=2, scale=3)
    assert len(frames) == len(range(0, 30, 7)) + 1
    save_animation(frames, tmp_path / "gen.png")
    saved = frames_of(tmp_path / "gen.png")
    assert len(saved) == len(frames)
    assert np.array_equal(saved[-1], np.array(render_grid(pictures, 2, 3)))
    # frame k shows exactly the first 7k pixels of every picture, in raster order
    k = 2
    shown = saved[k][::3, ::3][2:7, 2:8]  # the first picture, unscaled
    first = pictures[0].permute(1, 2, 0).numpy()
    flat_shown, flat_first = shown.reshape(30, 3), first.reshape(30, 3)
    assert np.array_equal(flat_shown[: 7 * k], flat_first[: 7 * k]) and (flat_shown[7 * k:] == BLANK).all()


@pytest.mark.parametrize("side, scale", [(28, 4), (32, 4), (64, 2), (8, 8), (256, 1)])
def test_default_scale(side, scale):
    assert default_scale(side, side) == scale
