"""`pixelcnn train` options: --adam-betas, and no option the chosen model does not take."""

from __future__ import annotations

import json

import pytest
from conftest import QUICK, TINY
from test_training import one_error_line

from pixelcnn_cli.checkpoint import load_checkpoint, save_checkpoint
from pixelcnn_cli.config import TrainConfig

# QUICK without the gated architecture flags: a tiny run of any model
DATA = QUICK[: QUICK.index("--hidden-fmaps")]
TINY_PP = ["--model", "pixelcnnpp", "--model-option", "nr_resnet=1", "--model-option", "nr_filters=4",
           "--model-option", "nr_logistic_mix=2", "--limit-train-batches", "1", "--epochs", "1"]


def test_adam_betas_reach_the_optimiser_and_cannot_change_on_resume(cli, tmp_path):
    result = cli("train", *QUICK, "--epochs", "1", "--adam-betas", "0.95", "0.9995", "--run-name", "b")
    assert result.exit_code == 0, result.stderr
    ckpt = load_checkpoint(tmp_path / "runs" / "b" / "checkpoints" / "last.pt")
    assert ckpt["config"]["adam_betas"] == [0.95, 0.9995]
    assert all(group["betas"] == (0.95, 0.9995) for group in ckpt["optimizer_state"]["param_groups"])
    line = one_error_line(cli("train", "--resume", "runs/b", "--epochs", "2", "--adam-betas", "0.9", "0.999"))
    assert line.startswith("error: --adam-betas: cannot change when resuming")


def test_adam_betas_outside_0_1_are_one_line_errors(cli):
    assert "--adam-betas: each must be in [0, 1)" in one_error_line(cli("train", *QUICK, "--adam-betas", "1", "0.9"))
    assert "--adam-betas" in one_error_line(cli("train", *QUICK, "--adam-betas", "0.9", "-0.1"))


def test_a_checkpoint_from_before_adam_betas_resumes_with_the_old_default(cli, tmp_path):
    result = cli("train", *QUICK, "--epochs", "1", "--run-name", "old")
    assert result.exit_code == 0, result.stderr
    last = tmp_path / "runs" / "old" / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(last)
    del ckpt["config"]["adam_betas"]  # as written before the option existed
    save_checkpoint(last, ckpt)
    resumed = cli("train", "--resume", "runs/old", "--epochs", "2")
    assert resumed.exit_code == 0, resumed.stderr
    assert load_checkpoint(last)["config"]["adam_betas"] == list(TrainConfig().adam_betas)


@pytest.mark.parametrize("flag, value", [("--hidden-layers", "12"), ("--causal-ksize", "5"), ("--hidden-fmaps", "8"),
                                         ("--out-hidden-fmaps", "8"), ("--hidden-ksize", "3")])
def test_pixelcnnpp_refuses_the_gated_architecture_flags(cli, tmp_path, flag, value):
    line = one_error_line(cli("train", *DATA, *TINY_PP, flag, value, "--run-name", "pp"))
    assert line.startswith(f"error: {flag}: model 'pixelcnnpp' has no such option")
    assert "--model-option" in line and "nr_resnet" in line  # what it does take
    assert not (tmp_path / "runs" / "pp").exists()  # refused before anything was trained or recorded


def test_a_config_file_key_the_model_does_not_take_is_refused(cli, tmp_path):
    (tmp_path / "c.toml").write_text("hidden_layers = 12\n")
    line = one_error_line(cli("train", *DATA, *TINY_PP, "--config", "c.toml"))
    assert "--hidden-layers: model 'pixelcnnpp' has no such option" in line


def test_inspect_masks_refuses_the_same_way(cli):
    line = one_error_line(cli("inspect-masks", "--model", "pixelcnnpp", "--hidden-layers", "12"))
    assert line.startswith("error: --hidden-layers: model 'pixelcnnpp' has no such option")
    assert "--model-option" in line and "nr_resnet" in line


def test_models_that_take_the_flags_and_presets_still_train(cli, tmp_path):
    # the gated model and the classic plugin declare the architecture flags: nothing is refused
    for model in ("gated", "classic"):
        result = cli("train", *QUICK, "--model", model, "--epochs", "1", "--limit-train-batches", "1",
                     "--run-name", model)
        assert result.exit_code == 0, result.stderr
        assert json.loads((tmp_path / "runs" / model / "config.json").read_text())["config"]["hidden_layers"] == 1
    # a pixelcnnpp preset sets no gated field, so it is not refused; a tiny run of it trains
    result = cli("train", *DATA, *TINY_PP, "--preset", "pixelcnnpp-cpu", "--run-name", "pp")
    assert result.exit_code == 0, result.stderr
    # and resuming it (its config records every field, used or not) is not refused either
    resumed = cli("train", "--resume", "runs/pp", "--epochs", "2")
    assert resumed.exit_code == 0, resumed.stderr
