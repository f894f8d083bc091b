"""Sampling: the cached sampler against the naive reference, completion, and the CLI around them."""

from __future__ import annotations

import io
import os
import sys
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from pixelcnn_cli import registry, sampling
from pixelcnn_cli.checkpoint import load_checkpoint, save_checkpoint
from pixelcnn_cli.cli.progress import SamplingProgress
from pixelcnn_cli.config import ArchitectureConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.data.quantize import levels_to_uint8
from pixelcnn_cli.errors import PixelCNNError
from pixelcnn_cli.models.gated import GatedPixelCNN, GatedPixelCNNPlugin
from pixelcnn_cli.contracts import SupportsIncremental

from conftest import TINY


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: the naive reference runs thousands of tiny forward passes, which
    extra threads only slow down (badly so on a busy machine); the cached sampler uses one anyway."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_model(channels, levels, classes, causal, hidden, layers, fmaps=6, seed=0, spec_size=(8, 8)):
    """A gated model with non-trivial random weights (noise on every parameter, masked
    positions included: the samplers must apply the masks themselves)."""
    torch.manual_seed(seed)
    spec = ModelSpec(channels, *spec_size, levels, classes)
    arch = ArchitectureConfig(causal_ksize=causal, hidden_ksize=hidden, hidden_fmaps=fmaps, out_hidden_fmaps=fmaps,
                              hidden_layers=layers)
    model = GatedPixelCNN(spec, arch)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.4)
    return model, spec


def run(model, spec, labels, uniforms, sampler, **kwargs):
    steps = []
    levels = sampling.sample(model, spec, labels, uniforms, sampler=sampler,
                             on_logits=lambda r, c, ch, lg: steps.append(((r, c, ch), lg.clone())), **kwargs)
    return levels, steps


def assert_same_run(a, b):
    (levels_a, steps_a), (levels_b, steps_b) = a, b
    assert [s[0] for s in steps_a] == [s[0] for s in steps_b]
    for (where, la), (_, lb) in zip(steps_a, steps_b):
        torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-4, msg=f"logits differ at (row, col, colour) {where}")
    assert torch.equal(levels_a, levels_b)


# channels, levels, classes, causal k, hidden k, hidden layers, sample size (H, W)
CASES = [
    (1, 2, 0, 3, 3, 1, (5, 6)),
    (1, 2, 10, 7, 5, 2, (8, 8)),
    (1, 4, 3, 5, 7, 3, (7, 5)),
    (1, 2, 0, 7, 7, 2, (3, 2)),  # narrower than the kernels reach
    (3, 4, 0, 3, 5, 1, (6, 7)),
    (3, 4, 10, 7, 3, 2, (5, 8)),
    (3, 256, 0, 5, 7, 3, (6, 6)),
    (3, 16, 5, 7, 7, 1, (8, 6)),
]


def both_samplers_agree(model, spec, count: int, size: tuple[int, int], seed: int):
    """Draw ``count`` images with the naive and the cached sampler from the same uniforms: the same
    logits at every step and the same images, and not a degenerate draw. Returns the images, labels
    and uniforms."""
    labels = torch.arange(count) % spec.num_classes if spec.num_classes else None
    uniforms = sampling.draw_uniforms(count, spec.channels, *size, seed=seed)
    naive = run(model, spec, labels, uniforms, "naive")
    cached = run(model, spec, labels, uniforms, "cached")
    assert len(naive[1]) == len(cached[1]) == spec.channels * size[0] * size[1]
    assert_same_run(naive, cached)
    assert naive[0].shape == (count, spec.channels, *size)
    assert len(naive[0].unique()) > 1  # the draw is not degenerate
    return naive[0], labels, uniforms


@pytest.mark.parametrize("channels,levels,classes,causal,hidden,layers,size", CASES)
def test_cached_sampler_is_exact(channels, levels, classes, causal, hidden, layers, size):
    model, spec = random_model(channels, levels, classes, causal, hidden, layers)
    images, labels, uniforms = both_samplers_agree(model, spec, 4, size, seed=7)
    assert sampling.sample(model, spec, labels, uniforms).equal(images)  # auto = cached


def test_cached_sampler_restores_threads_and_mode():
    model, spec = random_model(1, 2, 0, 3, 3, 1)
    model.train()
    threads = torch.get_num_threads()
    sampling.sample(model, spec, None, sampling.draw_uniforms(2, 1, 3, 3, 0), sampler="cached")
    assert torch.get_num_threads() == threads
    assert model.training
    assert isinstance(model, SupportsIncremental)


@pytest.mark.parametrize("channels,classes,keep", [(1, 10, 3), (3, 0, 1), (1, 0, 0)])
def test_completion_keeps_rows_and_matches(channels, classes, keep):
    model, spec = random_model(channels, 4, classes, 5, 3, 2)
    count, size = 3, (6, 5)
    torch.manual_seed(1)
    known = torch.randint(4, (count, channels, *size))
    labels = torch.arange(count) % classes if classes else None
    uniforms = sampling.draw_uniforms(count, channels, *size, seed=3)
    results = {}
    for name in ("naive", "cached"):
        steps, progress = [], []
        levels = sampling.complete(model, spec, known, keep, labels, uniforms, sampler=name,
                                   on_step=lambda d, t: progress.append((d, t)),
                                   on_logits=lambda r, c, ch, lg: steps.append(((r, c, ch), lg.clone())))
        assert torch.equal(levels[:, :, :keep], known[:, :, :keep])  # kept rows untouched
        assert steps[0][0] == (keep, 0, 0) and len(steps) == channels * (size[0] - keep) * size[1]
        assert progress[-1] == (len(steps), len(steps))
        results[name] = (levels, steps)
    assert_same_run(results["naive"], results["cached"])
    # the rest is sampled, given the kept rows: other kept rows give other logits
    other = known.clone()
    other[:, :, :keep] = (other[:, :, :keep] + 1) % 4
    if keep:
        steps = []
        sampling.complete(model, spec, other, keep, labels, uniforms,
                          on_logits=lambda r, c, ch, lg: steps.append(lg.clone()))
        assert not torch.allclose(steps[0], results["cached"][1][0][1])


def test_completion_validates():
    model, spec = random_model(1, 2, 0, 3, 3, 1)
    known = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    uniforms = sampling.draw_uniforms(2, 1, 4, 4, 0)
    with pytest.raises(PixelCNNError, match="keep-rows"):
        sampling.complete(model, spec, known, 4, None, uniforms)
    with pytest.raises(PixelCNNError, match="levels"):
        sampling.complete(model, spec, known + 2, 1, None, uniforms)


def test_low_temperature_approaches_argmax():
    model, spec = random_model(3, 8, 0, 3, 3, 1)
    uniforms = sampling.draw_uniforms(3, 3, 4, 4, seed=5)
    levels, steps = run(model, spec, None, uniforms, "cached", temperature=1e-6)
    for (row, col, ch), logits in steps:
        assert torch.equal(levels[:, ch, row, col], logits.argmax(dim=-1))
    warm, _ = run(model, spec, None, uniforms, "cached", temperature=1.0)
    assert not torch.equal(levels, warm)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(PixelCNNError, match="temperature"):
            sampling.sample(model, spec, None, uniforms, temperature=bad)


def test_random_labels_differ_without_a_seed_and_repeat_with_one():
    spec = ModelSpec(1, 4, 4, 2, 10)
    draws = [sampling.resolve_labels(-1, 200, spec, None) for _ in range(2)]
    assert not torch.equal(*draws)  # 200 labels of 10 classes: a coincidence is negligible
    assert torch.equal(sampling.resolve_labels(-1, 200, spec, 5), sampling.resolve_labels(-1, 200, spec, 5))
    assert not torch.equal(sampling.resolve_labels(-1, 200, spec, 5), sampling.resolve_labels(-1, 200, spec, 6))
    assert torch.equal(sampling.resolve_labels(3, 4, spec, None), torch.full((4,), 3))


def test_unknown_sampler():
    model, spec = random_model(1, 2, 0, 3, 3, 1)
    with pytest.raises(PixelCNNError, match="unknown sampler"):
        sampling.sample(model, spec, None, sampling.draw_uniforms(1, 1, 2, 2, 0), sampler="fast")


class NoCacheModel(GatedPixelCNN):
    """The gated model without incremental state, as a third-party plugin might be."""

    incremental_sampler = None


class NoCachePlugin(GatedPixelCNNPlugin):
    name = "nocache"

    def build(self, options, spec):
        return NoCacheModel(spec, options)


def test_fallback_to_naive_with_notice():
    model, spec = random_model(1, 2, 0, 3, 3, 1)
    plain = NoCacheModel(spec, model.options)
    plain.load_state_dict(model.state_dict())
    uniforms = sampling.draw_uniforms(2, 1, 4, 3, 0)
    assert sampling.choose_sampler(plain, "cached")[0] == "naive"
    notices = []
    levels = sampling.sample(plain, spec, None, uniforms, sampler="cached", on_notice=notices.append)
    assert len(notices) == 1 and "naive" in notices[0]
    assert torch.equal(levels, sampling.sample(model, spec, None, uniforms, sampler="naive"))
    assert sampling.choose_sampler(model, "cached") == ("cached", None)
    assert sampling.choose_sampler(model, "naive") == ("naive", None)


def test_completion_tiles_layout():
    originals = torch.tensor([0, 1])[:, None, None, None].expand(2, 1, 4, 3)
    completions = torch.arange(6)[:, None, None, None].expand(6, 1, 4, 3) % 2
    tiles = sampling.completion_tiles(originals, completions, 2, 2)
    assert tiles.shape == (2 * 5, 1, 4, 3) and tiles.dtype == torch.uint8
    assert torch.equal(tiles[0], levels_to_uint8(originals[0], 2))
    assert torch.equal(tiles[5], levels_to_uint8(originals[1], 2))
    assert torch.equal(tiles[1, :, :2], tiles[0, :, :2])
    assert set(tiles[1, :, 2:].unique().tolist()) == {96, 160}  # hidden rows: a grey checkerboard
    assert torch.equal(tiles[2:5], levels_to_uint8(completions[:3], 2))


def test_progress_counts_pixel_colours():
    buffer = io.StringIO()
    with SamplingProgress(Console(file=buffer, force_terminal=False), "sampling", images=4) as progress:
        for done in range(1, 13):
            progress(done, 12)
    text = buffer.getvalue()
    assert "12/12 pixel-colours" in text and "pixel-colours/s x 4 images" in text
    live = io.StringIO()
    with SamplingProgress(Console(file=live, force_terminal=True, width=120), "sampling") as progress:
        progress(3, 3)
    assert "3/3" in live.getvalue() and "pixel-colours/s" in live.getvalue()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cached_sampler_on_cuda():
    """Under the default precision policy (full fp32, see :mod:`pixelcnn_cli.precision`): with TF32
    convolutions the naive sampler's logits differ from the cached one's by about 1e-3."""
    model, spec = random_model(3, 4, 10, 5, 3, 2)
    model.cuda()
    labels = torch.arange(4) % 10
    uniforms = sampling.draw_uniforms(4, 3, 5, 6, seed=1)
    assert_same_run(run(model, spec, labels, uniforms, "naive"), run(model, spec, labels, uniforms, "cached"))


# -- the command line ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny conditional and unconditional models trained on mnist-sample (once for the module)."""
    from typer.testing import CliRunner

    from pixelcnn_cli.cli.app import app

    folder = tmp_path_factory.mktemp("sampling-runs")
    common = ["--dataset", "mnist-sample", "--epochs", "1", "--limit-train-batches", "2", "--batch-size", "16",
              "--epoch-samples", "1", "--seed", "0", "--output-dir", str(folder), *TINY]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WANDB_MODE", "offline")
            mp.chdir(folder)
            for name, extra in (("cond", []), ("uncond", ["--unconditional"])):
                result = CliRunner().invoke(app, ["train", "--run-name", name, *extra, *common])
                assert result.exit_code == 0, result.stderr + result.stdout
    finally:
        torch.set_num_threads(threads)
    return {name: folder / name / "checkpoints" / "best.pt" for name in ("cond", "uncond")}


def one_line_error(result, *words):
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert word in lines[0]


SMALL = ["-c", "3", "--height", "5", "--width", "6", "--seed", "4"]


def test_cli_naive_and_cached_write_identical_pngs(cli, checkpoints, tmp_path):
    for name in ("naive", "cached"):
        result = cli("sample", "-m", checkpoints["cond"], *SMALL, "--sampler", name, "--output-fname", f"{name}.png")
        assert result.exit_code == 0, result.stderr
        assert "pixel-colours" in result.stderr
    assert (tmp_path / "naive.png").read_bytes() == (tmp_path / "cached.png").read_bytes()
    one_line_error(cli("sample", "-m", checkpoints["cond"], *SMALL, "--sampler", "fast"), "--sampler")


def test_cli_sample_errors(cli, checkpoints, tmp_path):
    cond, uncond = checkpoints["cond"], checkpoints["uncond"]
    one_line_error(cli("sample", "-m", cond, *SMALL, "--label", "10"), "--label", "0 and 9")
    one_line_error(cli("sample", "-m", uncond, *SMALL, "--label", "1"), "--label", "unconditional")
    assert cli("sample", "-m", uncond, *SMALL).exit_code == 0
    one_line_error(cli("sample", "-m", cond, "-c", "0"), "count")
    one_line_error(cli("sample", "-m", cond, "--temperature", "0"), "temperature")
    one_line_error(cli("sample", "-m", cond, "--temperature", "-2"), "temperature")
    one_line_error(cli("sample", "-m", cond, "--output-fname", "out.jpg"), ".png")
    (tmp_path / "afile").write_text("x")
    one_line_error(cli("sample", "-m", cond, "--output-fname", "afile/out.png"), "afile")
    one_line_error(cli("sample", "-m", cond, "--keep-rows", "3"), "--keep-rows", "--complete")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        one_line_error(cli("sample", "-m", cond, "--output-fname", "locked/out.png"), "locked")


def test_cli_low_temperature(cli, checkpoints, tmp_path):
    result = cli("sample", "-m", checkpoints["cond"], *SMALL, "--temperature", "0.01", "--output-fname", "cold.png")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "cold.png").exists()


def test_cli_fallback_notice(cli, checkpoints, tmp_path):
    payload = load_checkpoint(checkpoints["cond"])
    payload["config"]["model"] = "nocache"
    for key in ("format", "format_version", "package_version"):
        payload.pop(key)
    save_checkpoint(tmp_path / "nocache.pt", payload)
    registry.models.add(EntryPoint(name="nocache", value=f"{__name__}:NoCachePlugin", group=registry.MODELS))
    try:
        result = cli("sample", "-m", tmp_path / "nocache.pt", *SMALL, "--output-fname", "fallback.png")
        assert result.exit_code == 0, result.stderr
        assert "notice:" in result.stderr and "naive sampler" in result.stderr
        quiet = cli("sample", "-m", tmp_path / "nocache.pt", *SMALL, "--sampler", "naive", "--output-fname", "n.png")
        assert quiet.exit_code == 0 and "notice:" not in quiet.stderr
    finally:
        registry.models.reset()
    reference = cli("sample", "-m", checkpoints["cond"], *SMALL, "--output-fname", "reference.png")
    assert reference.exit_code == 0
    assert (tmp_path / "fallback.png").read_bytes() == (tmp_path / "reference.png").read_bytes()


def read_png(path):
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image))


def test_cli_complete_dataset_images(cli, checkpoints, tmp_path):
    args = ["sample", "-m", checkpoints["cond"], "--complete", "--indices", "0,5", "-c", "2", "--keep-rows", "20",
            "--seed", "1", "--scale", "2"]
    for name in ("cached", "naive"):
        result = cli(*args, "--sampler", name, "--output-fname", f"{name}.png")
        assert result.exit_code == 0, result.stderr
        assert "test images 0, 5" in result.stdout
    assert (tmp_path / "naive.png").read_bytes() == (tmp_path / "cached.png").read_bytes()
    picture = read_png(tmp_path / "cached.png")
    # 2 rows (sources) x 4 columns (original, kept part, 2 completions) of 28x28 tiles, 2-pixel
    # padding, enlarged twice
    assert picture.shape == (2 * (2 * 30 + 2), 2 * (4 * 30 + 2))
    tiles = picture[::2, ::2]

    def tile(r, c):
        return tiles[2 + r * 30 : 2 + r * 30 + 28, 2 + c * 30 : 2 + c * 30 + 28]

    from pixelcnn_cli.data.mnist_sample import MNISTSample

    test = MNISTSample().load(tmp_path, False).test
    for r, index in enumerate((0, 5)):
        original = levels_to_uint8(test[index][0][0].long() * 2 // 256, 2)
        assert torch.equal(tile(r, 0), original)
        assert torch.equal(tile(r, 1)[:20], original[:20])
        assert set(tile(r, 1)[20:].unique().tolist()) == {96, 160}
        for c in (2, 3):
            assert torch.equal(tile(r, c)[:20], original[:20])  # kept rows
            assert set(tile(r, c)[20:].unique().tolist()) <= {0, 255}  # sampled rows
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--complete", "--indices", "0,5000"), "--indices", "5000")
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--complete", "--indices", "a,b"), "--indices")
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--complete", "--keep-rows", "28"), "--keep-rows")


def test_cli_complete_random_and_files(cli, checkpoints, tmp_path):
    result = cli("sample", "-m", checkpoints["uncond"], "--complete", "--sources", "3", "-c", "1", "--seed", "2",
                 "--scale", "2")
    assert result.exit_code == 0, result.stderr
    picture = read_png(tmp_path / "samples" / "completions.png")
    assert picture.shape == (2 * (3 * 30 + 2), 2 * (3 * 30 + 2))  # 3 sources x (2 + 1 completion)
    Image.new("RGB", (40, 30), (250, 250, 250)).save(tmp_path / "a.png")
    Image.new("L", (28, 28), 0).save(tmp_path / "b.png")
    result = cli("sample", "-m", checkpoints["cond"], "--complete", "--images", "a.png", "b.png", "-c", "2",
                 "--label", "3", "--keep-rows", "5", "--output-fname", "files.png", "--seed", "0", "--scale", "2")
    assert result.exit_code == 0, result.stderr
    tiles = read_png(tmp_path / "files.png")[::2, ::2]
    assert torch.equal(tiles[2:30, 2:30], torch.full((28, 28), 255, dtype=torch.uint8))  # a.png, grey and 28x28
    assert torch.equal(tiles[32:37, 2 + 2 * 30 : 30 + 2 * 30], torch.zeros(5, 28, dtype=torch.uint8))  # b's kept rows
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--complete", "--images", "missing.png"), "missing.png")
    (tmp_path / "bad.png").write_text("not an image")
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--complete", "--images", "bad.png"), "bad.png")
    one_line_error(cli("sample", "-m", checkpoints["cond"], "--images", "a.png"), "--complete")


# -- the benchmark scripts run (tiny settings; the figures themselves are not checked) --------


def load_script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_sampling_benchmark_runs(capsys):
    import json

    script = load_script("sampling")
    assert script.main(["--case", "grey16", "--batch-sizes", "2", "--naive-max-pixels", "1", "--repeats", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)["results"][0]
    assert record["images"] == 2 and record["naive_extrapolated"] and record["naive_pixels_measured"] == 1
    assert record["cached_seconds"] > 0 and record["ratio"] > 0
    assert script.main(["--case", "grey16", "--batch-sizes", "1", "--naive-max-pixels", "0", "--repeats", "1"]) == 0
    assert "naive/cached" in capsys.readouterr().out


def test_training_benchmark_runs(capsys):
    import json

    script = load_script("training")
    assert script.main(["--batch-size", "2", "--steps", "1", "--warmup", "0", "--eval-batch-size", "2",
                        "--eval-batches", "1", "--no-trainer", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["training"]["phase_seconds_per_step"]) == {"data", "forward", "loss", "backward", "optimiser"}
    assert report["eval"]["images_per_second"] > 0


def test_training_benchmark_times_a_preset_on_rgb(capsys, tmp_path):
    import json

    script = load_script("training")
    assert script.main(["--preset", "pixelcnnpp-cpu", "--data", "rgb", "--batch-size", "2", "--steps", "1",
                        "--warmup", "0", "--eval-batch-size", "2", "--eval-batches", "1", "--no-trainer", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "preset pixelcnnpp-cpu at 256 levels, 3x32x32"
    assert report["training"]["batch_size"] == 2 and report["training"]["images_per_second"] > 0
    # --against: its own options are not passed on to the runs it compares, and a folder without
    # the package is refused before anything runs
    assert script.without_against(["--preset", "x", "--against", "/a", "--rounds=3", "--against=/b", "--steps", "2"]) == [
        "--preset", "x", "--steps", "2"]
    assert script.main(["--against", str(tmp_path), "--rounds", "1"]) == 2
    assert "holds no pixelcnn_cli package" in capsys.readouterr().err
