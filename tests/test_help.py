"""Help, usage errors and shell completion answer without loading PyTorch; help is Rich on a terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Runs the CLI in a fresh interpreter, then says whether torch got imported on the way.
PROBE = """
import sys
from pixelcnn_cli.cli.app import main
try:
    main()
finally:
    print("TORCH-LOADED" if "torch" in sys.modules else "TORCH-NOT-LOADED", file=sys.stderr)
"""


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=environment,
                          timeout=120)


@pytest.mark.parametrize("args", [
    ["--help"], ["train", "--help"], ["sample", "--help"], ["eval", "--help"], ["inspect-masks", "--help"],
    ["plugins", "--help"], ["trian"], ["train", "--epochs", "many"], ["--version"],
])
def test_help_and_usage_errors_do_not_load_torch(args):
    done = run_cli(*args)
    assert done.stderr.rstrip().endswith("TORCH-NOT-LOADED"), done.stderr
    if args[-1] in ("--help", "--version"):
        assert done.returncode == 0 and done.stdout
    else:
        assert done.returncode == 2
        assert [line for line in done.stderr.splitlines() if line.startswith("error: ")]


def test_a_command_that_computes_loads_torch(tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE, "eval", "-m", str(tmp_path / "none.pt")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "TORCH-LOADED" in done.stderr  # the probe can tell


@pytest.mark.parametrize("words, expected", [
    ("pixelcnn tr", ["train"]),
    ("pixelcnn train --pre", ["--preset", "--precision"]),
    ("pixelcnn train --preset pix", ["pixelcnnpp-paper-cifar", "pixelcnnpp-cpu", "pixelsnail-paper-cifar",
                                     "pixelsnail-cpu"]),
    ("pixelcnn train --dataset mnist", ["mnist", "mnist-sample"]),
    ("pixelcnn inspect-masks --model pixel", ["pixelcnnpp", "pixelsnail"]),
])
def test_shell_completion(words, expected):
    cword = len(words.split()) - 1
    done = run_cli(_PIXELCNN_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == sorted(expected)
    assert done.stderr.rstrip().endswith("TORCH-NOT-LOADED")


def test_install_completion_is_offered():
    done = run_cli("--help")
    assert "--install-completion" in done.stdout and "--show-completion" in done.stdout


def test_help_is_rich_on_a_terminal_and_plain_elsewhere():
    plain = run_cli("train", "--help")
    assert "Options:" in plain.stdout and "╭" not in plain.stdout and "\x1b[" not in plain.stdout
    assert "[default: 25]" in plain.stdout
    rich = run_cli("train", "--help", TTY_COMPATIBLE="1", COLUMNS="200")
    assert rich.returncode == 0, rich.stderr
    text = rich.stdout
    while "\x1b[" in text:  # strip the colours to read the words
        start = text.index("\x1b[")
        text = text[:start] + text[text.index("m", start) + 1:]
    assert "╭─ Options" in text
    # our help strings are plain text: Rich shows their brackets instead of reading them as markup
    assert "Number of epochs [default: 25]" in text
    assert "--preset" in text and "gated-cpu" in text
