"""The ``classic`` model plugin: strictly causal by gradients, with the blind spot the gated model removes."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, distribution

import pytest
import torch

try:
    distribution("pixelcnn-classic")
except PackageNotFoundError:  # pragma: no cover - the README's install command installs it
    pytest.skip("pixelcnn-classic is not installed (pip install -e plugins/pixelcnn-classic)", allow_module_level=True)

from typer.testing import CliRunner  # noqa: E402

from importlib.metadata import EntryPoint  # noqa: E402

from pixelcnn_cli import ImageData, ModelSpec, TensorImageDataset, registry  # noqa: E402
from pixelcnn_cli.causality import check_causality, full_view_size  # noqa: E402
from pixelcnn_cli.checkpoint import load_checkpoint  # noqa: E402
from pixelcnn_cli.cli.app import app  # noqa: E402
from pixelcnn_cli.config import ArchitectureConfig  # noqa: E402
from pixelcnn_cli.models.gated import GatedPixelCNN  # noqa: E402
from pixelcnn_classic import ClassicOptions, ClassicPixelCNN, ClassicPixelCNNPlugin  # noqa: E402

SMALL = {"causal_ksize": 3, "hidden_ksize": 3, "hidden_fmaps": 6, "out_hidden_fmaps": 6, "hidden_layers": 2}
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


class Checkers:
    """A small in-process dataset: 24 RGB 6x6 images of two classes."""

    name = "checkers"

    def load(self, data_dir, download, options=None):
        grid = (torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2
        images = torch.stack([(grid if k % 2 else 1 - grid).to(torch.uint8).mul(255).expand(3, 6, 6) for k in range(24)])
        split = TensorImageDataset(images.contiguous(), torch.arange(24) % 2)
        return ImageData(3, 6, 6, ["even", "odd"], split, split)


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def build(channels: int, **options) -> ClassicPixelCNN:
    torch.manual_seed(0)
    return ClassicPixelCNNPlugin().build(ClassicOptions(**{**SMALL, **options}), ModelSpec(channels, 8, 8, 4, 3))


def test_discovered_through_its_entry_point():
    entry = registry.models.entry("classic")
    assert entry is not None and entry.distribution == "pixelcnn-classic"
    assert isinstance(registry.models.get("classic"), ClassicPixelCNNPlugin)


def test_logits_shape_with_and_without_labels():
    model = build(3)
    x = torch.rand(2, 3, 5, 7) * 2 - 1
    assert model(x, torch.tensor([0, 2])).shape == (2, 4, 3, 5, 7)
    assert model(x, None).shape == (2, 4, 3, 5, 7)
    unconditional = ClassicPixelCNNPlugin().build(ClassicOptions(**SMALL), ModelSpec(1, 8, 8, 2, 0))
    assert unconditional(torch.zeros(1, 1, 4, 4)).shape == (1, 2, 1, 4, 4)
    assert not any("label" in name for name, _ in unconditional.named_parameters())


@pytest.mark.parametrize("channels", [1, 3])
def test_strictly_causal_with_a_blind_spot(channels):
    model = build(channels)
    spec = ModelSpec(channels, 8, 8, 4, 3)
    side = full_view_size(model, spec)
    assert side == model.reach + 1 == 4
    report = check_causality(model, spec, side, side, max_trials=3)
    assert report.future_violations == 0  # never the current colour, a later colour or a later pixel
    assert report.blind_spots > 0
    # the first row is fully seen (nothing above it); the blind spot lies up and to the right
    first_row = report.index(1, 0, 0)
    assert report.depends[:first_row].sum() == sum(range(first_row))
    (output, missed) = report.first_blind_spot()
    assert missed[0] < output[0] and missed[1] > output[1]

    gated = GatedPixelCNN(spec, ArchitectureConfig(**{**SMALL, "hidden_fmaps": 2 * channels}))
    assert check_causality(gated, spec, side, side).ok  # the same kernels and layers, no blind spot


def test_the_blind_spot_is_the_known_wedge():
    """A 3x3 mask A then one 3x3 mask-B block: the output at (2, 0) misses exactly (1, 2)."""
    model = build(1, hidden_layers=1)
    report = check_causality(model, ModelSpec(1, 3, 3, 4, 3), 3, 3, max_trials=3)
    view = report.view_of(2, 0, 0)[0]
    assert view.tolist() == [[True, True, True], [True, True, False], [False, False, False]]
    assert report.blind_spots == 2  # (1, 0) misses (0, 2); (2, 0) misses (1, 2)


def test_options_are_validated_by_the_plugin():
    for bad in ({"hidden_ksize": 4}, {"hidden_layers": 0}, {"depth": 3}, {"hidden_fmaps": 0}):
        with pytest.raises(ValueError):
            ClassicOptions(**bad)
    result = cli("train", "--dataset", "mnist-sample", "--model", "classic", "--model-option", "hidden_ksize=4", *TINY[:6])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: model_options.hidden_ksize: must be a positive odd number (got 4)"]
    result = cli("inspect-masks", "--model", "classic", "--channels", "3", "--hidden-fmaps", "2")
    assert result.exit_code != 0 and result.stderr.strip() == "error: hidden_fmaps: must be at least the 3 data channels (got 2)"


def test_a_causal_kernel_of_one_is_refused():
    """A 1x1 mask A never shows a pixel the last colour of an earlier one (for grey images: nothing)."""
    with pytest.raises(ValueError, match="at least 3"):
        ClassicOptions(causal_ksize=1)
    for command in (["inspect-masks", "--model", "classic", "--causal-ksize", "1"],
                    ["train", "--dataset", "mnist-sample", "--model", "classic", "--model-option", "causal_ksize=1"]):
        result = cli(*command)
        assert result.exit_code == 2 and "Traceback" not in result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: model_options.causal_ksize: must be an odd number of at least 3 (got 1): a 1x1")
    assert ClassicOptions(causal_ksize=3, hidden_ksize=1).hidden_ksize == 1  # adds no reach, hides nothing


def test_inspect_masks_shows_the_blind_spot_beside_the_gated_view(tmp_path):
    result = cli("inspect-masks", "--model", "classic", "--channels", "1", "--causal-ksize", "3", "--hidden-ksize", "3",
                 "--hidden-layers", "2", "--hidden-fmaps", "4", "--out-hidden-fmaps", "4", "-o", "views.png")
    assert result.exit_code == 0, result.stderr + result.stdout  # a declared blind spot is reported, not a failure
    out = result.stdout
    assert "classic" in out and "gated (same kernels, 2 layers)" in out
    assert "✗" in out  # the unseen pixels are drawn
    assert "causal: no output depends on its own or a later input (16 outputs x 16 inputs on a 4x4x1 image)" in out
    assert "blind spot: " in out and " earlier inputs unseen" in out
    assert "gated with the same kernels and layers: no blind spot, no future dependency" in out
    assert (tmp_path / "views.png").exists()


def test_train_sample_eval_and_inspect_a_classic_checkpoint(tmp_path):
    registry.datasets.add(EntryPoint(name="checkers", value=f"{__name__}:Checkers", group=registry.DATASETS))
    result = cli("train", "--dataset", "checkers", "--model", "classic", "--epochs", "1", "--batch-size", "8",
                 "--epoch-samples", "0", "--seed", "0", "--run-name", "c", *TINY)
    assert result.exit_code == 0, result.stderr + result.stdout
    checkpoint = tmp_path / "runs" / "c" / "checkpoints" / "best.pt"
    saved = load_checkpoint(checkpoint)
    assert saved["plugins"]["model"] == {"name": "classic", "distribution": "pixelcnn-classic", "version": "0.1.0"}
    assert saved["model_options"]["hidden_ksize"] == 3 and saved["model_options"]["hidden_layers"] == 1

    result = cli("sample", "-m", checkpoint, "-c", "2", "--height", "4", "--width", "4", "--seed", "0", "--output-fname", "s.png")
    assert result.exit_code == 0 and (tmp_path / "s.png").exists(), result.stderr
    result = cli("eval", "-m", checkpoint, "--json")
    assert result.exit_code == 0 and '"images": 24' in result.stdout, result.stderr
    result = cli("inspect-masks", "-m", checkpoint)
    assert result.exit_code == 0, result.stderr
    assert "model classic" in result.stdout and "blind spot: 18 earlier inputs unseen" in result.stdout
