"""The command suite as a user drives it: options, config files, run folders, bad input."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from conftest import TINY, one_error_line

from pixelcnn_cli import registry
from pixelcnn_cli.checkpoint import load_checkpoint
from pixelcnn_cli.contracts import ImageData, TensorImageDataset

QUICK = ["--dataset", "mnist-sample", "--epochs", "1", "--limit-train-batches", "2", "--batch-size", "8",
         "--epoch-samples", "0", "--seed", "0", *TINY]


class TinyRGB:
    """A 3-channel, 4-class dataset of 6x6 images, defined against the plugin contract only."""

    name = "tiny-rgb"

    def load(self, data_dir, download, options=None):
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (24, 3, 6, 6), generator=g, dtype=torch.uint8)
        labels = torch.arange(24) % 4
        split = TensorImageDataset(images, labels)
        return ImageData(3, 6, 6, ["a", "b", "c", "d"], split, split)


@pytest.fixture
def rgb_dataset():
    registry.datasets.add(EntryPoint(name="tiny-rgb", value="test_cli:TinyRGB", group=registry.DATASETS))
    yield "tiny-rgb"
    registry.datasets.reset()



def test_help_of_every_command(cli):
    for command in ("train", "sample", "eval", "inspect-masks", "plugins"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout
    train_help = cli("train", "--help").stdout
    for flag in ("--epochs", "--batch-size", "--causal-ksize", "--hidden-ksize", "--color-levels", "--hidden-fmaps",
                 "--out-hidden-fmaps", "--hidden-layers", "--learning-rate", "--lr", "--weight-decay", "--max-norm",
                 "--epoch-samples", "--cuda", "--config"):
        assert flag in train_help
    assert "[default: 25]" in train_help and "[default: 0.0001]" in train_help
    sample_help = cli("sample", "--help").stdout
    for flag in ("-m", "--model-path", "--output-fname", "--label", "--l", "-c", "--count", "--height", "--width", "--seed"):
        assert flag in sample_help
    assert cli("--version").stdout.startswith("pixelcnn ")


def test_train_leaves_a_complete_run_folder(cli, tmp_path):
    result = cli("train", *QUICK, "--epochs", "2", "--epoch-samples", "2", "--run-name", "r")
    assert result.exit_code == 0, result.stderr
    run = tmp_path / "runs" / "r"
    assert (run / "checkpoints" / "last.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    assert (run / "samples" / "epoch_001.png").exists() and (run / "samples" / "epoch_002.png").exists()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(m["test_bits_per_dim"] > 0 for m in metrics)
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["hidden_fmaps"] == 6 and saved["spec"]["channels"] == 1 and saved["spec"]["num_classes"] == 10
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert checkpoint["config"] == saved["config"] and checkpoint["epoch"] == 2
    # the summary table goes to stdout, progress to stderr (one plain line per epoch when not a terminal)
    assert "best: epoch" in result.stdout
    assert result.stderr.count("epoch 1/2") == 1 and result.stderr.count("epoch 2/2") == 1


def test_grey_data_is_one_channel_and_classes_come_from_the_dataset(cli, tmp_path, rgb_dataset):
    result = cli("train", *QUICK, "--dataset", rgb_dataset, "--run-name", "rgb")
    assert result.exit_code == 0, result.stderr
    spec = load_checkpoint(tmp_path / "runs" / "rgb" / "checkpoints" / "last.pt")["spec"]
    assert (spec["channels"], spec["height"], spec["num_classes"]) == (3, 6, 4)
    result = cli("sample", "-m", tmp_path / "runs" / "rgb", "--label", "4", "-c", "1")
    assert "between 0 and 3" in one_error_line(result)


def test_unconditional_training(cli, tmp_path):
    assert cli("train", *QUICK, "--unconditional", "--run-name", "u").exit_code == 0
    spec = load_checkpoint(tmp_path / "runs" / "u" / "checkpoints" / "last.pt")["spec"]
    assert spec["num_classes"] == 0
    assert "unconditional" in one_error_line(cli("sample", "-m", tmp_path / "runs" / "u", "--label", "1"))


def test_config_file_supplies_options_and_flags_win(cli, tmp_path):
    (tmp_path / "run.toml").write_text('hidden_fmaps = 4\nepochs = 3\ncolor-levels = 4\nrun_name = "from-file"\n')
    result = cli("train", "--config", "run.toml", *QUICK)  # QUICK says --epochs 1 and --hidden-fmaps 6
    assert result.exit_code == 0, result.stderr
    config = json.loads((tmp_path / "runs" / "from-file" / "config.json").read_text())["config"]
    assert config["epochs"] == 1 and config["hidden_fmaps"] == 6 and config["color_levels"] == 4
    (tmp_path / "run.yaml").write_text("run_name: yaml-run\nweight_decay: 0.0\n")
    assert cli("train", "--config", "run.yaml", *QUICK).exit_code == 0
    assert json.loads((tmp_path / "runs" / "yaml-run" / "config.json").read_text())["config"]["weight_decay"] == 0.0


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--color-levels", "1"], "--color-levels"),
        (["--color-levels", "300"], "--color-levels"),
        (["--causal-ksize", "4"], "--causal-ksize: must be an odd number of at least 3 (got 4)"),
        (["--causal-ksize", "1"], "--causal-ksize: must be an odd number of at least 3 (got 1): a 1x1 mask-A kernel"),
        (["--hidden-ksize", "0"], "--hidden-ksize"),
        (["--batch-size", "0"], "--batch-size"),
        (["--epochs", "-1"], "epochs"),
        (["--dataset", "nope"], "unknown dataset 'nope'; available: cifar, cifar10, codes, fashionmnist"),
        (["--lr-schedule", "zigzag"], "--lr-schedule"),
        (["--run-name", "a/b"], "--run-name: must be a plain folder name"),
        (["--epochs", "many"], "Invalid value for '--epochs'"),
        (["--no-such-flag"], "No such option"),
    ],
)
def test_bad_options_are_one_line_errors(cli, args, expected):
    assert expected in one_error_line(cli("train", *QUICK, *args))


def test_every_bad_field_is_reported(cli):
    result = cli("train", *QUICK, "--color-levels", "1", "--hidden-ksize", "2")
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()  # one error line per bad field, nothing else
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines), lines
    assert "--color-levels" in lines[1] and "--hidden-ksize" in lines[0]


def test_hidden_fmaps_must_split_into_colour_groups(cli, tmp_path, rgb_dataset):
    stderr = one_error_line(cli("train", *QUICK, "--dataset", rgb_dataset, "--hidden-fmaps", "31", "--run-name", "x"))
    assert "hidden_fmaps: must be divisible by the 3 data channels (got 31)" in stderr
    assert not (tmp_path / "runs" / "x").exists()  # checked before anything is written


def test_config_file_errors(cli, tmp_path):
    (tmp_path / "bad.toml").write_text("hidden_fmaps = 6\ncolour_levels = 4\n")
    assert one_error_line(cli("train", "--config", "bad.toml", *QUICK)) == "error: bad.toml: colour_levels: unknown option"
    (tmp_path / "value.toml").write_text('ema = "lots"\n')  # a bad value from the file names the file
    assert one_error_line(cli("train", "--config", "value.toml", *QUICK)).startswith("error: value.toml: ema: ")
    # the flag wins over the file, and so does its name
    assert one_error_line(cli("train", "--config", "value.toml", *QUICK, "--ema", "2")).startswith("error: --ema: ")
    (tmp_path / "broken.toml").write_text("hidden_fmaps = = 6\n")
    assert "cannot parse config file" in one_error_line(cli("train", "--config", "broken.toml", *QUICK))
    assert "config file not found" in one_error_line(cli("train", "--config", "missing.yaml", *QUICK))
    (tmp_path / "run.ini").write_text("[x]\n")
    assert "must be .toml, .yaml" in one_error_line(cli("train", "--config", "run.ini", *QUICK))


def test_an_existing_run_folder_is_never_overwritten_unless_asked(cli, tmp_path):
    assert cli("train", *QUICK, "--epochs", "1", "--run-name", "keep").exit_code == 0
    marker = tmp_path / "runs" / "keep" / "notes.txt"
    marker.write_text("mine")
    stderr = one_error_line(cli("train", *QUICK, "--run-name", "keep"))
    assert "already exists" in stderr and "--overwrite" in stderr
    assert marker.read_text() == "mine"
    assert cli("train", *QUICK, "--epochs", "1", "--run-name", "keep", "--overwrite").exit_code == 0
    assert not marker.exists()
    # without a name, two runs in the same second get two folders
    assert cli("train", *QUICK, "--epochs", "1").exit_code == 0 and cli("train", *QUICK, "--epochs", "1").exit_code == 0
    assert len(list((tmp_path / "runs").glob("mnist-sample-*"))) == 2


def test_sample_finds_the_newest_run_and_says_so(cli, trained, tmp_path):
    result = cli("sample", "--label", "3", "-c", "4", "--height", "5", "--width", "7")
    assert result.exit_code == 0, result.stderr
    assert "using the newest run's best checkpoint" in result.stderr and "tiny" in result.stderr
    from PIL import Image

    picture = Image.open(tmp_path / "samples" / "samples.png")
    assert picture.mode == "L" and picture.width > picture.height  # 2x2 grid of 5x7 images
    result = cli("sample", "-m", trained, "-c", "1", "--output-fname", "out/one.png", "--height", "4", "--width", "4")
    assert result.exit_code == 0 and (tmp_path / "out" / "one.png").exists()


def test_sample_without_any_run_or_shipped_model(cli, monkeypatch):
    from pixelcnn_cli import pretrained

    monkeypatch.setattr(pretrained, "default_path", lambda: None)  # an install that lacks the shipped model
    stderr = one_error_line(cli("sample", "-c", "1"))
    assert "no checkpoint given and none found under runs" in stderr


def test_sample_bad_inputs(cli, trained):
    assert "count" in one_error_line(cli("sample", "-m", trained, "-c", "0"))
    assert "must be a .png file" in one_error_line(cli("sample", "-m", trained, "--output-fname", "x.jpg"))
    assert "between 0 and 9" in one_error_line(cli("sample", "-m", trained, "--l", "10"))
    assert "checkpoint not found" in one_error_line(cli("sample", "-m", "nothing.pt"))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, a folder nobody may create files in")
def test_an_unwritable_output_fails_before_the_work_not_after(cli, trained, tmp_path):
    """A folder is tried by making a file in it, not asked with os.access (which says yes to root,
    /proc included); a file where the folder should be is named as such; the table of `score -o`
    is checked before the scoring."""
    for command in (("sample", "-m", trained, "-c", "1", "-o", "/proc/x.png"),
                    ("score", "-m", trained, "--compare", "train", "--histogram", "/proc/h.png"),
                    ("score", "-m", trained, "-o", "/proc/rows.csv")):
        result = cli(*command)
        assert one_error_line(result).startswith("error: cannot write to folder /proc: "), command
        assert "scoring" not in result.stderr  # nothing was scored first
    (tmp_path / "taken").write_text("a file")
    line = one_error_line(cli("sample", "-m", trained, "-c", "1", "-o", "taken/x.png"))
    assert line == "error: cannot write taken/x.png: taken is a file, not a folder"
    written = cli("sample", "-m", trained, "-c", "1", "-o", "new/folder/one.png")
    assert written.exit_code == 0 and "wrote 1 sample (" in written.stdout, written.stdout
    assert (tmp_path / "new" / "folder" / "one.png").is_file()
    assert [p.name for p in (tmp_path / "new" / "folder").iterdir()] == ["one.png"]  # no probe left behind


def test_eval_prints_nats_and_bits_and_json(cli, trained):
    text = cli("eval", "-m", trained)
    assert text.exit_code == 0, text.stderr
    assert "nats/image" in text.stdout and "bits/dim" in text.stdout and "1000 images" in text.stdout
    record = json.loads(cli("eval", "-m", trained, "--json").stdout)
    assert record["images"] == 1000 and record["dataset"] == "mnist-sample"
    assert record["bits_per_dim"] == pytest.approx(record["nats_per_image"] / 784 / 0.6931471805599453)


def test_eval_on_another_dataset(cli, trained, rgb_dataset):
    stderr = one_error_line(cli("eval", "-m", trained, "--dataset", rgb_dataset))
    assert "3 channels but the model was trained on 1" in stderr
    assert "unknown dataset" in one_error_line(cli("eval", "-m", trained, "--dataset", "nope"))


def test_inspect_masks_default_model_is_causal(cli, tmp_path):
    result = cli("inspect-masks", "--hidden-layers", "2", "--output", "masks.png")
    assert result.exit_code == 0, result.stderr
    assert "mask A" in result.stdout and "mask B" in result.stdout
    assert "R, G" in result.stdout  # B reads R and G at the centre under mask A
    assert "causal: every output depends on exactly the earlier pixels and colours" in result.stdout
    assert (tmp_path / "masks.png").exists()


def test_inspect_masks_of_a_trained_model_and_bad_input(cli, trained):
    result = cli("inspect-masks", "-m", trained)
    assert result.exit_code == 0, result.stderr
    assert "causal:" in result.stdout and "on a 3x3x1 image" in result.stdout
    assert "hidden_ksize" in one_error_line(cli("inspect-masks", "--hidden-ksize", "4"))
    assert "divisible by the 3 data channels" in one_error_line(cli("inspect-masks", "--hidden-fmaps", "31"))
    assert "must end in .png" in one_error_line(cli("inspect-masks", "--output", "masks.gif"))


def test_inspect_masks_runs_on_the_cpu_unless_cuda_is_asked_for(cli, trained, monkeypatch):
    from pixelcnn_cli import inspection

    help_text = " ".join(cli("inspect-masks", "--help").stdout.split())
    assert "--cuda / --no-cuda Run the check on CUDA [default: on the CPU" in help_text
    devices = []
    check = inspection.check_causality

    def recording_check(model, *args, **kwargs):
        devices.append(next(model.parameters()).device.type)
        return check(model, *args, **kwargs)

    monkeypatch.setattr(inspection, "check_causality", recording_check)
    tiny = ["--channels", "1", "--hidden-layers", "1", "--hidden-fmaps", "2", "--out-hidden-fmaps", "2"]
    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: True)  # the default must not depend on it
        assert cli("inspect-masks", *tiny).exit_code == 0
        assert cli("inspect-masks", "-m", trained).exit_code == 0
        assert cli("inspect-masks", *tiny, "--no-cuda").exit_code == 0
    assert devices == ["cpu"] * 3
    devices.clear()
    result = cli("inspect-masks", *tiny, "--cuda")
    if torch.cuda.is_available():
        assert result.exit_code == 0 and devices == ["cuda"]
    else:  # asked for and missing: said so, not silently done on the CPU
        assert "CUDA was asked for but is not available" in one_error_line(result) and not devices


def test_a_causal_kernel_of_one_is_refused_in_one_line(cli):
    """A 1x1 mask-A kernel leaves every pixel blind to its own row: refused before any work."""
    for command in (["train", *QUICK, "--run-name", "blind"], ["inspect-masks"]):
        stderr = one_error_line(cli(*command, "--causal-ksize", "1"))
        assert len(stderr.strip().splitlines()) == 1
        # train names the flag; inspect-masks reports the model option the flag became
        assert "causal_ksize: must be an odd number of at least 3 (got 1)" in stderr.replace("--causal-ksize", "causal_ksize")


def test_inspect_masks_checks_at_least_a_2x2_image(cli):
    result = cli("inspect-masks", "--channels", "1", "--causal-ksize", "3", "--hidden-ksize", "1")  # smallest kernels
    assert result.exit_code == 0, result.stderr
    assert "causal: every output depends on exactly the earlier pixels" in result.stdout
    assert "on a 2x2x1 image" in result.stdout


def test_wandb_offline_logs_a_run(cli, tmp_path):
    pytest.importorskip("wandb")
    result = cli("train", *QUICK, "--epoch-samples", "1", "--wandb", "--run-name", "w")
    assert result.exit_code == 0, result.stderr
    offline = list((tmp_path / "runs" / "w").rglob("offline-run-*"))
    assert offline, "wandb wrote no offline run"


def test_wandb_without_login_is_a_clear_error(cli, monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    stderr = one_error_line(cli("train", *QUICK, "--wandb"))
    assert "wandb login" in stderr and "WANDB_MODE=offline" in stderr
