"""The plugin guide's worked example, run as the README writes it: the npz plugin's code, the
snippet that makes ``shapes.npz``, and the console session with what each command prints."""

from __future__ import annotations

import json
import re
import runpy
import shlex
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from conftest import TINY

from pixelcnn_cli import registry

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def block(first_line: str) -> str:
    """The fenced block of the README whose first line is ``first_line``."""
    start = README.index(f"\n{first_line}\n") + 1
    return README[start: README.index("\n```", start)]


def console_after(text: str) -> str:
    """The first ``console`` block after ``text`` in the README."""
    start = README.index("```console\n", README.index(text)) + len("```console\n")
    return README[start: README.index("\n```", start)]


def session(console: str) -> list[tuple[list[str], str]]:
    """``$ pixelcnn ...`` lines with the first line each prints."""
    lines = console.splitlines()
    return [(shlex.split(line[2:].split("  #")[0])[1:], lines[i + 1]) for i, line in enumerate(lines)
            if line.startswith("$ pixelcnn ")]


def masked(line: str) -> str:
    """A printed line with its figures (and the run folder's time stamp) left out."""
    return re.sub(r"\d[\d,.]*", "#", line.strip())


@pytest.fixture
def npz_plugin(tmp_path, monkeypatch):
    (tmp_path / "pixelcnn_npz.py").write_text(block("# pixelcnn_npz.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    runpy.run_path(str(_write(tmp_path / "make_shapes.py", block("# make_shapes.py: 200 8x8 pictures of a white square "
                                                                  "on black, class 0 small and class 1 large"))))
    registry.datasets.add(EntryPoint(name="npz", value="pixelcnn_npz:NpzImages", group=registry.DATASETS))
    yield
    registry.datasets.reset()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_plugin_guides_session_runs_as_written(cli, npz_plugin):
    steps = session(console_after("Use it like any built-in dataset."))
    assert [args[0] for args in (s[0] for s in steps)] == ["train", "train", "train", "eval"]
    for args, expected in steps:
        # the first training run on the tiny model, so the test takes a second (the README's is the default)
        result = cli(*args, *(TINY if args[0] == "train" and expected.startswith("run folder") else []))
        printed = (result.stderr + result.stdout).splitlines()
        if expected.startswith("error:"):
            assert result.exit_code != 0 and printed == [expected], (args, printed)
        else:
            assert result.exit_code == 0, (args, printed)
            assert masked(expected) in [masked(line) for line in printed], (args, printed)


def test_the_plugin_table_lists_what_is_installed(cli, npz_plugin):
    table = console_after("Install it next to pixelcnn and check that it loads:")
    rows = table.split("━╇━")[-1].splitlines()[1:]  # below the header's rule
    listed = [line.split()[0] for line in rows]
    installed = json.loads(cli("plugins", "--json").stdout)
    assert listed == [p["name"] for p in installed]
