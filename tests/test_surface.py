"""One surface: an option that several commands take has the same name, aliases, default and help on each.

The walk reads the Typer app's click commands (no torch is loaded), so a new command or option is
checked as soon as it exists.
"""

from __future__ import annotations

import json

import pytest
import typer

from conftest import QUICK, one_error_line
from pixelcnn_cli.cli.app import app
from pixelcnn_cli.config import TrainConfig

COMPUTE = ("train", "sample", "eval", "score", "inspect-masks")
DATA = ("eval", "score", "sample")

#: option (its primary long name) -> the commands that must take it, all alike
SHARED = {
    "--runs-dir": ("train", "sample", "eval", "score", "runs", "plot"),
    "--cuda": COMPUTE,
    "--device": COMPUTE,
    "--dataset": DATA,
    "--split": DATA,
    "--dataset-option": DATA,
    "--data-dir": DATA,
    "--download": DATA,
    "--label": ("sample", "score"),
    "--output": ("sample", "score", "plot", "inspect-masks"),
}

#: aliases one command keeps beyond the shared ones (the seed's names, or a command's old name)
EXTRA_ALIASES = {("sample", "--output"): {"--output-fname"}, ("train", "--runs-dir"): {"--output-dir"}}
#: shared options whose default and help rightly differ per command (what the file is)
OWN_DEFAULT_AND_HELP = {"--output"}
#: (command, option) whose default differs from the others', with the word its help must use to say why
DIFFERENT_DEFAULT = {("inspect-masks", "--cuda"): "CPU"}


def commands() -> dict:
    group = typer.main.get_command(app)
    return dict(group.commands)


def option(command, name: str):
    for param in command.params:
        if name in param.opts or name in param.secondary_opts:
            return param
    return None


def aliases(param) -> set[str]:
    return set(param.opts) | set(param.secondary_opts)


def effective_default(command_name: str, param):
    """train's flags default to None so config files can layer under them: read TrainConfig's default."""
    if command_name == "train" and param.default is None and param.name in TrainConfig.model_fields:
        return TrainConfig.model_fields[param.name].get_default(call_default_factory=True)
    return param.default


def test_every_command_that_needs_a_shared_option_has_it():
    found = commands()
    missing = [f"{c} {name}" for name, owners in SHARED.items() for c in owners if option(found[c], name) is None]
    assert not missing


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_options_agree(name):
    found = commands()
    params = {c: option(found[c], name) for c in SHARED[name] if option(found[c], name) is not None}
    names = {c: aliases(p) - EXTRA_ALIASES.get((c, name), set()) for c, p in params.items()}
    assert len({frozenset(v) for v in names.values()}) == 1, names
    if name in OWN_DEFAULT_AND_HELP:
        return
    same = {c: p for c, p in params.items() if (c, name) not in DIFFERENT_DEFAULT}
    defaults = {c: effective_default(c, p) for c, p in same.items()}
    assert len({json.dumps(v) for v in defaults.values()}) == 1, defaults
    helps = {c: p.help for c, p in same.items()}
    assert len(set(helps.values())) == 1, helps
    for (c, n), word in DIFFERENT_DEFAULT.items():
        if n == name:
            assert word in params[c].help, params[c].help


def test_any_option_on_several_commands_has_the_same_aliases():
    seen: dict[str, dict[str, set[str]]] = {}
    for c, command in commands().items():
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            shared = [n for n in aliases(param) if n in SHARED]
            key = shared[0] if shared else max(param.opts, key=len)
            seen.setdefault(key, {})[c] = aliases(param) - EXTRA_ALIASES.get((c, key), set())
    differing = {n: by for n, by in seen.items() if len({frozenset(v) for v in by.values()}) > 1}
    assert not differing


def test_seed_aliases_still_work(cli, trained, tmp_path):
    """sample keeps --output-fname and --l, and -1 for random classes; train keeps --output-dir."""
    result = cli("sample", "-m", trained, "-c", "2", "--l", "-1", "--output-fname", "old.png", "--height", "4",
                 "--width", "4")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "old.png").exists()
    result = cli("sample", "-m", trained, "-c", "2", "--label", "3", "-o", "new.png", "--height", "4", "--width", "4")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "new.png").exists()


# -- what the walk cannot see: the shared options do the same thing on every command ---------------

def test_train_writes_to_runs_dir_and_keeps_output_dir(cli, tmp_path):
    assert cli("train", *QUICK, "--epochs", "1", "--runs-dir", "new", "--run-name", "a").exit_code == 0
    assert (tmp_path / "new" / "a" / "checkpoints" / "best.pt").exists()
    assert cli("train", *QUICK, "--epochs", "1", "--output-dir", "old", "--run-name", "b").exit_code == 0
    assert (tmp_path / "old" / "b" / "checkpoints" / "best.pt").exists()
    saved = json.loads((tmp_path / "new" / "a" / "config.json").read_text())
    assert saved["config"]["output_dir"] == "new"  # the key old configs and checkpoints use
    listed = cli("runs", "--runs-dir", "new", "--json")
    assert [r["name"] for r in json.loads(listed.stdout)] == ["a"]


def test_eval_takes_split_and_dataset_options(cli, trained):
    train = json.loads(cli("eval", "-m", trained, "--split", "train", "--json").stdout)
    test = json.loads(cli("eval", "-m", trained, "--json").stdout)
    assert train["split"] == "train" and test["split"] == "test" and train["images"] != test["images"]
    assert "--split" in one_error_line(cli("eval", "-m", trained, "--split", "valid"))
    assert "nonsense" in one_error_line(cli("eval", "-m", trained, "--dataset-option", "nonsense=1"))


def test_score_takes_download(cli, trained, tmp_path):
    result = cli("score", "-m", trained, "--no-download", "--split", "train", "-o", "rows.csv")
    assert result.exit_code == 0, result.stderr
    assert "train[0]" in (tmp_path / "rows.csv").read_text()


def test_sample_complete_takes_the_data_options(cli, trained):
    result = cli("sample", "-m", trained, "--complete", "--split", "train", "--indices", "0,5", "-c", "1",
                 "--no-download", "-o", "c.png")
    assert result.exit_code == 0, result.stderr
    assert "train images 0, 5" in result.stdout
    assert "only with --complete" in one_error_line(cli("sample", "-m", trained, "--split", "train"))
    assert "nonsense" in one_error_line(cli("sample", "-m", trained, "--complete", "--dataset-option", "nonsense=1"))


def test_a_stray_argument_to_sample_is_named_as_such(cli, trained, tmp_path):
    """`sample 3` (a label meant) or `--animate -c 2` (the path left out: -c becomes it) leave a loose
    argument: it is named, not taken for an image file under --images, which was never typed."""
    assert one_error_line(cli("sample", "-m", trained, "3")) == (
        "error: unexpected argument '3' (image files to complete go with --complete --images)")
    line = one_error_line(cli("sample", "-m", trained, "--animate", "-c", "2", "x.png"))
    assert line.startswith("error: unexpected arguments '2' 'x.png' ("), line
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "samples").exists()
    assert "--images: only with --complete" in one_error_line(cli("sample", "-m", trained, "--images", "a.png"))


def test_label_minus_one_is_none_fixed_on_score_as_on_sample(cli, trained, tmp_path):
    unset = cli("score", "-m", trained, "-o", "unset.jsonl")
    minus = cli("score", "-m", trained, "--l", "-1", "-o", "minus.jsonl")
    assert unset.exit_code == 0 and minus.exit_code == 0, minus.stderr
    assert (tmp_path / "unset.jsonl").read_text() == (tmp_path / "minus.jsonl").read_text()
    assert "0 to 9" in one_error_line(cli("score", "-m", trained, "--label", "-2"))
    assert cli("sample", "-m", trained, "-c", "2", "--height", "4", "--width", "4").exit_code == 0


def test_eval_and_score_say_what_their_figure_is(cli, trained, tmp_path):
    record = json.loads(cli("eval", "-m", trained, "--json").stdout)
    assert (record["likelihood"], record["conditional"], record["color_levels"]) == ("-log p(x|y)", True, 2)
    assert "bits_per_dim" in record and "nats_per_image" in record  # the old keys stay
    assert "-log p(x|y) (class-conditional), 2 colour levels" in cli("eval", "-m", trained).stdout
    result = cli("score", "-m", trained, "-o", "own.jsonl")
    assert "-log p(x|y) (class-conditional), 2 colour levels" in result.stdout
    row = json.loads((tmp_path / "own.jsonl").read_text().splitlines()[0])
    assert (row["likelihood"], row["conditional"], row["color_levels"]) == ("-log p(x|y)", True, 2)
    result = cli("score", "-m", trained, "--marginal", "-o", "marginal.jsonl")
    assert "-log p(x) (marginal over classes), 2 colour levels" in result.stdout
    assert json.loads((tmp_path / "marginal.jsonl").read_text().splitlines()[0])["likelihood"] == "-log p(x)"


def test_inspect_masks_takes_device(cli):
    result = cli("inspect-masks", "--channels", "1", "--hidden-layers", "1", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "causal" in result.stdout


def test_a_bad_value_is_named_by_the_flag_that_gave_it(cli, tmp_path):
    """The error names what the user typed: the flag, or the config file's key when the file gave it."""
    bad = cli("sample", "-o", "grid.jpg")
    assert bad.exit_code != 0 and bad.stderr.strip() == "error: --output: must be a .png file (got 'grid.jpg')"
    bad = cli("sample", "-c", "0")
    assert bad.exit_code != 0 and bad.stderr.strip().startswith("error: --count: ")
    bad = cli("train", "--lr", "-1")
    assert bad.exit_code != 0 and bad.stderr.strip().startswith("error: --learning-rate: ")
    (tmp_path / "run.toml").write_text("learning_rate = -1\n")
    bad = cli("train", "--config", "run.toml")
    assert bad.exit_code != 0 and bad.stderr.strip().startswith("error: run.toml: learning_rate: ")
