"""A dataset plugin written only against the documented contract, driven end to end through the CLI.

``Stripes`` below uses nothing but what ``pixelcnn_cli`` documents for plugin authors
(``ImageData``, a ``torch.utils.data.Dataset`` of ``(uint8 C x H x W, int)`` items and a
pydantic options model); it is registered in-process, as a notebook would.
"""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest
import torch
from conftest import TINY, one_error_line
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from pixelcnn_cli import ImageData, registry
from pixelcnn_cli.checkpoint import load_checkpoint

SEEN_OPTIONS: list[BaseModel] = []  # what the plugin received, for the tests to look at


class StripesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(8, ge=2, le=64)
    count: int = Field(48, ge=4)
    classes: int = Field(2, ge=1, le=4)


class StripesSplit(Dataset):
    """Images made on demand: class k has a bright stripe every k + 2 rows (nothing held in memory)."""

    def __init__(self, options: StripesOptions, offset: int):
        self.options, self.offset = options, offset

    def __len__(self) -> int:
        return self.options.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = (index + self.offset) % self.options.classes
        size = self.options.size
        rows = (torch.arange(size) % (label + 2) == 0).to(torch.uint8) * 255
        return rows[:, None].expand(size, size).unsqueeze(0).clone(), label


class Stripes:
    name = "stripes"
    description = "Striped test images"
    options_model = StripesOptions

    def load(self, data_dir, download, options: StripesOptions) -> ImageData:
        SEEN_OPTIONS.append(options)
        names = [f"every {k + 2} rows" for k in range(options.classes)]
        return ImageData(1, options.size, options.size, names, StripesSplit(options, 0), StripesSplit(options, 1))


@pytest.fixture(autouse=True)
def stripes():
    """Register ``stripes`` for one test; the registries are rediscovered afterwards."""
    registry.datasets.reset()
    registry.models.reset()
    SEEN_OPTIONS.clear()
    registry.datasets.add(EntryPoint(name="stripes", value=f"{__name__}:Stripes", group=registry.DATASETS))
    yield "stripes"
    registry.datasets.reset()
    registry.models.reset()


QUICK = ["--epochs", "1", "--batch-size", "16", "--seed", "0", *TINY]


def test_contract_only_plugin_trains_samples_and_evaluates(cli, tmp_path):
    result = cli("train", "--dataset", "stripes", "--dataset-option", "size=6", "--dataset-option", "classes=3",
                 "--epoch-samples", "1", "--run-name", "s", *QUICK)
    assert result.exit_code == 0, result.stderr + result.stdout
    assert len(SEEN_OPTIONS) == 1 and isinstance(SEEN_OPTIONS[0], StripesOptions)
    assert SEEN_OPTIONS[0] == StripesOptions(size=6, classes=3)  # validated by the plugin's own model
    run = tmp_path / "runs" / "s"
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["dataset_options"] == {"size": 6, "classes": 3}
    assert saved["spec"]["height"] == 6 and saved["spec"]["num_classes"] == 3
    assert saved["spec"]["class_names"] == ["every 2 rows", "every 3 rows", "every 4 rows"]
    assert saved["plugins"]["dataset"] == {"name": "stripes", "distribution": None, "version": None}
    assert saved["plugins"]["model"]["distribution"] == "pixelcnn-cli"
    assert (run / "samples" / "epoch_001.png").exists()
    checkpoint = run / "checkpoints" / "best.pt"
    assert load_checkpoint(checkpoint)["plugins"]["dataset"]["name"] == "stripes"

    result = cli("sample", "-m", checkpoint, "--label", "2", "-c", "2", "--seed", "1", "--output-fname", "s.png")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "s.png").exists()

    result = cli("eval", "-m", checkpoint, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["dataset"] == "stripes" and record["images"] == 48 and record["bits_per_dim"] > 0
    assert SEEN_OPTIONS[-1] == StripesOptions(size=6, classes=3)  # eval reloads with the training options


def test_options_from_a_config_file_and_flags(cli, tmp_path):
    (tmp_path / "run.toml").write_text('dataset = "stripes"\n[dataset_options]\nsize = 4\ncount = 8\n')
    result = cli("train", "--config", "run.toml", "--dataset-option", "count=16", "--epoch-samples", "0",
                 "--run-name", "c", *QUICK)
    assert result.exit_code == 0, result.stderr + result.stdout
    assert SEEN_OPTIONS[-1] == StripesOptions(size=4, count=16)  # the flag wins over the file, key by key


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("colour=red", "error: dataset_options.colour: unknown option (it takes: classes, count, size)"),
        ("size=huge", "error: dataset_options.size: Input should be a valid integer"),
        ("size=1", "error: dataset_options.size: Input should be greater than or equal to 2"),
        ("size", "error: --dataset-option: expected key=value, got 'size'"),
    ],
)
def test_bad_plugin_option_is_one_line(cli, tmp_path, option, message):
    result = cli("train", "--dataset", "stripes", "--dataset-option", option, *QUICK)
    assert one_error_line(result).startswith(message)
    assert not SEEN_OPTIONS  # the plugin never saw it
    assert not (tmp_path / "runs").exists()  # and no run folder was left behind


def test_options_for_a_plugin_that_takes_none(cli):
    line = one_error_line(cli("train", "--dataset", "mnist-sample", "--dataset-option", "size=8", *QUICK))
    assert line == "error: dataset_options.size: unknown option (it takes none)"
