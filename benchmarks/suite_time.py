"""How long the test suite takes, against an older commit's suite, side by side in one run.

    python benchmarks/suite_time.py --against 9943f91          # old suite, then this one
    python benchmarks/suite_time.py --against 9943f91 --rounds 2 --json
    python benchmarks/suite_time.py --against 9943f91 --new-args="-n 2"   # this suite on 2 workers


Measurement only. The older commit is checked out into a temporary git worktree; each suite
runs as ``python -m pytest -p no:cacheprovider`` (each tree's own addopts apply) in its own tree, with ``PYTHONPATH``
pointing at that tree's ``src/`` and plugins so its subprocess tests run its own code (the
environment is this one: the installed packages and entry points are shared, which both trees
declare alike). The suites alternate (old, new, old, new, ...) so that a machine getting
slower or faster in the meantime weighs on both. Prints each suite's wall time and its
pytest summary line, and the ratio. Each suite gets an empty inductor cache of its own
(``TORCHINDUCTOR_CACHE_DIR``), so a suite that compiles does not start warm from the one before.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_suite(tree: Path, extra: list[str]) -> tuple[float, str]:
    paths = [tree / "src", tree / "plugins" / "pixelcnn-classic" / "src", tree / "plugins" / "pixelcnn-imagefolder" / "src"]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths), "TORCHINDUCTOR_CACHE_DIR": cache}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rf", *extra], cwd=tree,
                              env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    failed = [line.split()[1] for line in lines if line.startswith("FAILED ")]  # -rf: which ones, to look at
    summary = lines[-1] if lines else f"no output (exit {done.returncode})"
    return seconds, summary + (f" (failed: {', '.join(failed)})" if failed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the older commit (or branch) whose suite to time")
    parser.add_argument("--rounds", type=int, default=1, help="times to run each suite")
    parser.add_argument("--old-args", default="", help="extra pytest arguments for the older suite")
    parser.add_argument("--new-args", default="", help='extra pytest arguments for this suite (e.g. "-n 2")')
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        old_tree = Path(scratch) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old_tree), args.against], cwd=ROOT, check=True)
        try:
            rows = []
            for round_ in range(1, args.rounds + 1):
                for name, tree, extra in (("old", old_tree, args.old_args), ("new", ROOT, args.new_args)):
                    seconds, summary = run_suite(tree, shlex.split(extra))
                    rows.append({"round": round_, "suite": name, "seconds": round(seconds, 1), "summary": summary})
                    if not args.json:
                        print(f"round {round_}  {name:3s}  {seconds:7.1f} s  {summary}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    old = sum(r["seconds"] for r in rows if r["suite"] == "old")
    new = sum(r["seconds"] for r in rows if r["suite"] == "new")
    if args.json:
        print(json.dumps({"against": args.against, "rows": rows, "speedup": round(old / new, 2)}, indent=2))
    else:
        print(f"old {old:.1f} s, new {new:.1f} s: {old / new:.2f}x faster")


if __name__ == "__main__":
    main()
