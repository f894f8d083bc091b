"""The house rules a newcomer relies on: no import circles, no overlong modules or functions, and
example plugins that use only the public API (what ``pixelcnn_cli`` exports)."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pixelcnn_cli

ROOT = Path(__file__).resolve().parent.parent


def test_the_checker_sees_a_function_level_import_as_a_circle(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import check_house
    finally:
        sys.path.pop(0)
    package = tmp_path / "pixelcnn_cli"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(check_house, "PACKAGE", package)
    names = {check_house.module_name(p): p for p in package.rglob("*.py")}
    graph = {n: check_house.imported_modules(p, n, set(names)) for n, p in names.items()}
    assert check_house.circles(graph) == [["pixelcnn_cli.a", "pixelcnn_cli.b"]]



def test_no_circle_and_nothing_overlong():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_house.py")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("house in order"), done.stdout + done.stderr
    # the training loop reads top to bottom: it stays well under the 400 lines every module keeps to
    assert len((ROOT / "src" / "pixelcnn_cli" / "training" / "loop.py").read_text().splitlines()) < 350

def _imports_from_pixelcnn_cli(path: Path) -> list[tuple[str, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pixelcnn_cli"):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.startswith("pixelcnn_cli")]
    return found


def test_example_plugins_import_only_the_public_api():
    sources = sorted((ROOT / "plugins").glob("*/src/**/*.py"))
    assert len(sources) >= 2
    for path in sources:
        for module, name in _imports_from_pixelcnn_cli(path):
            assert module == "pixelcnn_cli", f"{path.relative_to(ROOT)} imports the private module {module}"
            assert name in pixelcnn_cli.__all__, f"{path.relative_to(ROOT)} imports {name}, which pixelcnn_cli does not export"


def test_every_public_name_resolves():
    for name in pixelcnn_cli.__all__:
        assert getattr(pixelcnn_cli, name) is not None, name


def test_the_readme_lists_every_public_name():
    """The plugin guide's table of public names is the whole of ``pixelcnn_cli.__all__``."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("**The public API.**"):]
    table = table[: table.index("\n\n", table.index("| name |"))]
    listed = set(re.findall(r"`(\w+)`", table))
    assert [name for name in pixelcnn_cli.__all__ if name not in listed] == []
