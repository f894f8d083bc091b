"""Print what keeps the house simple: import circles, long modules and long function bodies.

    python scripts/check_house.py            # src/pixelcnn_cli and the example plugins

Every import counts, including those inside functions and under TYPE_CHECKING: a function-level
import that dodges a circle is still a circle. A package's ``__init__`` importing its own
submodules is not a circle with them (Python loads the package first by design). Exits 1 when it
finds anything, so a test can run it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "pixelcnn_cli"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target in known and target != name:
                found.add(target)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once (Tarjan's strongly connected components of two or more modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def long_functions(path: Path) -> list[tuple[str, int]]:
    """Functions whose body (from the first statement after the docstring) runs over the limit.

    A Typer command's parameter list is the signature, not the body, so it does not count.
    """
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                body = body[1:] or body
            length = body[-1].end_lineno - body[0].lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append((f"{node.name} (line {node.lineno})", length))
    return out


def main() -> int:
    files = sorted(PACKAGE.rglob("*.py"))
    names = {module_name(p): p for p in files}
    graph = {}
    for name, path in names.items():
        deps = imported_modules(path, name, set(names))
        # A package importing its own submodules (its public face) is how packages work.
        graph[name] = {d for d in deps if not (path.name == "__init__.py" and d.startswith(name + "."))}
        # ... and a submodule importing its parent package only triggers that package's load.
        graph[name] = {d for d in graph[name] if not name.startswith(d + ".")}
    problems = 0
    for cycle in circles(graph):
        problems += 1
        print("circle:", " <-> ".join(cycle))
    for path in files + sorted((ROOT / "plugins").rglob("src/**/*.py")):
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            problems += 1
            print(f"long module: {path.relative_to(ROOT)} ({lines} lines)")
        for function, length in long_functions(path):
            problems += 1
            print(f"long function: {path.relative_to(ROOT)}:{function} ({length} lines)")
    if not problems:
        print(f"house in order: {len(files)} modules, no circle, none over {MAX_MODULE_LINES} lines, "
              f"no function body over {MAX_FUNCTION_LINES} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
