"""Presets (named settings under the config file and flags), --max-minutes, the decay schedule, no clipping."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from conftest import QUICK, TINY
from test_training import config, one_error_line, rates_of

from pixelcnn_cli import presets
from pixelcnn_cli.building import build_model
from pixelcnn_cli.checkpoint import load_checkpoint, save_checkpoint
from pixelcnn_cli.cli.progress import TrainingProgress
from pixelcnn_cli.config import ArchitectureConfig, TrainConfig
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.training.schedules import lr_factor
from pixelcnn_cli.training import Callback, RunInfo, train

CIFAR = ModelSpec(channels=3, height=32, width=32, color_levels=256, num_classes=10)


def hints(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("hint:")]


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_is_a_valid_config_that_builds_its_model(name):
    values = presets.with_preset({}, {"preset": name})
    config = TrainConfig.model_validate(values)
    assert config.preset == name
    with torch.device("meta"):  # the paper models are GPU-sized: their shapes, without the memory
        model, options = build_model(config, CIFAR)
    out = model(torch.zeros(2, 3, 32, 32, device="meta"), torch.zeros(2, dtype=torch.long, device="meta"))
    assert out.shape[0] == 2 and out.shape[-2:] == (32, 32)
    assert options == {**options, **values.get("model_options", {})}


def test_the_paper_presets_hold_the_papers_settings():
    gated = TrainConfig.model_validate(presets.with_preset({}, {"preset": "gated-paper-cifar"}))
    assert (gated.model, gated.hidden_layers, gated.hidden_fmaps, gated.hidden_ksize) == ("gated", 20, 384, 5)
    pp = TrainConfig.model_validate(presets.with_preset({}, {"preset": "pixelcnnpp-paper-cifar"}))
    assert pp.model == "pixelcnnpp"
    assert pp.model_options == {"nr_resnet": 5, "nr_filters": 160, "nr_logistic_mix": 10, "dropout": 0.5,
                                "weight_norm": True}  # with openai's data-dependent init
    assert (pp.learning_rate, pp.lr_schedule, pp.lr_decay, pp.ema) == (1e-3, "decay", 0.999995, 0.9995)
    assert pp.max_norm == 0  # the paper clips nothing
    # the run behind each paper's number: unconditional CIFAR-10 at 256 levels, nothing left to add
    for paper in (gated, pp):
        assert (paper.dataset, paper.color_levels, paper.unconditional) == ("cifar", 256, True)
        assert paper.batch_size == 128  # one process; the source says how 8 torchrun processes get it
        assert "--batch-size 16" in presets.PRESETS[paper.preset].source
    assert pp.adam_betas == (0.95, 0.9995)  # openai/pixel-cnn's mom1, mom2
    assert (gated.max_steps, gated.adam_betas) == (200_000, (0.9, 0.999))


def test_preset_sits_under_config_file_and_flags_and_is_recorded(cli, tmp_path):
    (tmp_path / "c.toml").write_text('learning_rate = 5e-4\nhidden_layers = 2\n')
    result = cli("train", *QUICK, "--epochs", "1", "--preset", "gated-cpu", "--config", "c.toml",
                 "--hidden-layers", "1", "--run-name", "p")
    assert result.exit_code == 0, result.stderr
    recorded = json.loads((tmp_path / "runs" / "p" / "config.json").read_text())["config"]
    chosen = presets.PRESETS["gated-cpu"].values
    assert recorded["preset"] == "gated-cpu"
    assert recorded["learning_rate"] == 5e-4  # the file beats the preset
    assert recorded["hidden_layers"] == 1  # the flag beats the file
    assert recorded["hidden_fmaps"] == 6  # TINY's flag beats the preset
    for key in ("lr_schedule", "weight_decay", "ema"):  # the rest is the preset's
        assert recorded[key] == chosen[key]
    ckpt = load_checkpoint(tmp_path / "runs" / "p" / "checkpoints" / "last.pt")
    assert ckpt["config"] == recorded
    # resuming keeps the run's resolved values (the preset is not laid over them again)
    resumed = cli("train", "--resume", "runs/p", "--epochs", "2")
    assert resumed.exit_code == 0, resumed.stderr
    assert load_checkpoint(tmp_path / "runs" / "p" / "checkpoints" / "last.pt")["config"]["learning_rate"] == 5e-4


def test_preset_named_in_a_config_file(cli, tmp_path):
    (tmp_path / "c.yaml").write_text("preset: pixelcnnpp-cpu\nmodel_options:\n  nr_filters: 8\n")
    quick = QUICK[: QUICK.index("--hidden-fmaps")]  # without the gated flags, which pixelcnnpp refuses
    result = cli("train", *quick, "--epochs", "1", "--config", "c.yaml", "--run-name", "pp")
    assert result.exit_code == 0, result.stderr
    recorded = json.loads((tmp_path / "runs" / "pp" / "config.json").read_text())
    assert recorded["config"]["model"] == "pixelcnnpp"
    # one option changed by the file, the others the preset's
    assert recorded["model_options"]["nr_filters"] == 8
    assert recorded["model_options"]["nr_logistic_mix"] == presets.PRESETS["pixelcnnpp-cpu"].values["model_options"]["nr_logistic_mix"]


def test_bad_presets_are_one_line_errors(cli):
    line = one_error_line(cli("train", *QUICK, "--preset", "huge"))
    assert "unknown preset 'huge'" in line and "gated-cpu" in line
    line = one_error_line(cli("train", *QUICK, "--preset", "pixelcnnpp-cpu", "--model", "gated"))
    assert "--preset pixelcnnpp-cpu is for --model pixelcnnpp, not gated" in line


def test_hint_names_a_preset_when_the_seed_defaults_meet_256_levels(cli):
    fast = ["--dataset", "mnist-sample", "--max-steps", "1", "--limit-test-batches", "1", "--batch-size", "4",
            "--epoch-samples", "0", "--device", "cpu", "--color-levels", "256"]
    result = cli("train", *fast, "--run-name", "h")
    assert result.exit_code == 0, result.stderr
    (line,) = hints(result.stderr)
    assert "--preset pixelcnnpp-cpu" in line and "gated-cpu" in line
    assert hints(cli("train", *fast, "--preset", "gated-cpu", *TINY, "--run-name", "h2").stderr) == []
    # 2 levels, or a changed architecture or rate: the seed's small model is what was asked for
    assert presets.small_defaults_hint(TrainConfig(color_levels=2)) is None
    assert presets.small_defaults_hint(TrainConfig(color_levels=256, learning_rate=1e-3)) is None
    assert presets.small_defaults_hint(TrainConfig(color_levels=256, hidden_fmaps=60)) is None
    assert presets.small_defaults_hint(TrainConfig(color_levels=256, **ArchitectureConfig().model_dump())) is not None


def test_hint_names_the_cpu_preset_when_a_gpu_sized_model_meets_the_cpu():
    pp = TrainConfig(model="pixelcnnpp")
    line = presets.gpu_sized_hint(pp, 53_600_000, "cpu")
    assert line.startswith("hint: this pixelcnnpp has 53.6M parameters") and "--preset pixelcnnpp-cpu" in line
    assert "--preset gated-cpu" in presets.gpu_sized_hint(TrainConfig(), 5_000_000, torch.device("cpu"))
    assert presets.gpu_sized_hint(pp, 53_600_000, torch.device("cuda", 0)) is None  # sized for it
    assert presets.gpu_sized_hint(pp, 4_999_999, "cpu") is None  # the -cpu presets' size: nothing to say
    # a plugin model without a -cpu preset still hears why, without a preset that does not exist
    assert "--preset" not in presets.gpu_sized_hint(TrainConfig(model="classic"), 6_000_000, "cpu")


def test_training_prints_the_gpu_sized_hint_before_the_first_step():
    from rich.console import Console

    console = Console(record=True, width=400)
    info = RunInfo(run_dir=".", device=torch.device("cpu"), spec=CIFAR, parameters=53_600_000, train_images=1,
                   test_images=1, batches_per_epoch=1, config=TrainConfig(model="pixelcnnpp"))
    TrainingProgress(console).on_train_start(info, torch.nn.Linear(1, 1))
    (line,) = hints(console.export_text())
    assert "--preset pixelcnnpp-cpu" in line
    info.parameters = 100_000
    TrainingProgress(console).on_train_start(info, torch.nn.Linear(1, 1))
    assert len(hints(console.export_text())) == 0  # export_text clears: the small model printed no hint


def test_a_checkpoint_of_a_removed_preset_still_loads_samples_and_resumes(cli, trained):
    # the name is history: the checkpoint's resolved values are the run, whatever became of the preset
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(trained.parent / name)
        ckpt["config"]["preset"] = "some-removed-preset"
        save_checkpoint(trained.parent / name, ckpt)
    sampled = cli("sample", "-m", trained, "-c", "1", "--output-fname", "one.png")
    assert sampled.exit_code == 0, sampled.stderr
    resumed = cli("train", "--resume", trained.parent.parent, "--epochs", "2", "--limit-test-batches", "1",
                  "--epoch-samples", "0")
    assert resumed.exit_code == 0, resumed.stderr
    assert load_checkpoint(trained.parent / "last.pt")["config"]["preset"] == "some-removed-preset"


# -- --max-minutes ----------------------------------------------------------------------------------

class FakeClock:
    """perf_counter that moves on 10 s at every reading: the loop's time, without waiting."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 10.0
        return self.now


def test_max_minutes_ends_inside_an_epoch_evaluates_and_resume_extends_it(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "perf_counter", FakeClock())
    steps = []

    class Steps(Callback):
        def on_batch_end(self, epoch, batch, batches, loss, speed, lr):
            steps.append((epoch, batch))

    run = tmp_path / "r"
    result = train(config(epochs=5, max_minutes=1.0, output_dir=str(tmp_path), run_name="r"), [Steps()])
    assert 1 < len(steps) < 20 and result.epochs[-1].test_bits_per_dim > 0  # stopped early, and measured
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["train_state"]["position"]["evaluated"] is True
    assert ckpt["train_state"]["trained_seconds"] >= 60
    with pytest.raises(Exception, match="nothing to resume"):
        train(config(epochs=5, max_minutes=1.0, output_dir=str(tmp_path), run_name="r"), [], resume=run)
    done = len(steps)
    train(config(epochs=5, max_minutes=2.0, output_dir=str(tmp_path), run_name="r"), [Steps()], resume=run)
    assert len(steps) > done
    assert load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["trained_seconds"] >= 120


def test_max_minutes_flag(cli, tmp_path):
    result = cli("train", *QUICK, "--epochs", "50", "--max-minutes", "0.0001", "--run-name", "t")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "runs" / "t" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["step"] < 50 * 3
    assert "--max-minutes: Input should be greater than 0" in one_error_line(cli("train", *QUICK, "--max-minutes", "0"))


def test_cosine_and_exponential_end_with_the_time_budget():
    """With --max-minutes the run ends at whichever of its steps and its minutes run out first."""
    assert lr_factor("cosine", 10, 1000, 0, time_spent=0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 900, 1000, 0, time_spent=0.5) == pytest.approx(lr_factor("cosine", 900, 1000, 0))
    assert lr_factor("exponential", 10, 1000, 0, time_spent=1.0) == pytest.approx(0.01)
    for schedule in ("constant", "decay", "cyclic"):  # they have no end to aim at
        assert lr_factor(schedule, 10, 1000, 0, 0.9, time_spent=0.7) == lr_factor(schedule, 10, 1000, 0, 0.9)


def test_training_anneals_cosine_over_max_minutes(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "perf_counter", FakeClock())
    cfg = config(epochs=50, max_minutes=5.0, lr_schedule="cosine", learning_rate=1e-3, output_dir=str(tmp_path))
    rates = rates_of(cfg)
    assert 5 < len(rates) < 50 * 4 // 2  # the budget ends long before the 50 epochs' 200 steps
    assert rates == sorted(rates, reverse=True)
    assert rates[0] > 0.9e-3 and rates[-1] < 0.1e-3  # from lr to near 0 within the budget, not the epochs


# -- the decay schedule and no clipping --------------------------------------------------------------

def test_decay_schedule_multiplies_every_step():
    assert lr_factor("decay", 0, 10, 0, 0.5) == 1.0
    assert lr_factor("decay", 3, 10, 0, 0.5) == 0.125
    assert lr_factor("decay", 10**6, 10, 0, 0.999995) == pytest.approx(math.exp(10**6 * math.log(0.999995)))
    assert lr_factor("decay", 1, 10, 4, 0.5) == pytest.approx(0.5 * 0.5)  # warm-up multiplies it too


def test_training_follows_the_decay_schedule(tmp_path):
    rates = rates_of(config(epochs=1, lr_schedule="decay", lr_decay=0.9, learning_rate=1e-3, output_dir=str(tmp_path)))
    assert rates == pytest.approx([1e-3 * 0.9 ** s for s in range(1, 5)])


def test_max_norm_zero_clips_nothing(tmp_path, monkeypatch):
    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        seen.append(max_norm)
        return real(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    train(config(epochs=1, max_norm=0.0, output_dir=str(tmp_path)), [])
    assert seen and all(v == math.inf for v in seen)
