"""``pixelcnn runs`` and ``pixelcnn plot``: the runs so far, and their curves on one figure."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from .. import runs as run_files
from ..errors import ConfigError
from . import common
from .common import user_errors
from .options import RunsFolder

STATE_STYLES = {"finished": "green", "running": "cyan", "interrupted": "yellow", "stopped": "red"}


@user_errors
def runs(
    runs_dir: RunsFolder = "runs",
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON")] = False,
) -> None:
    """List the runs: dataset, model, epochs done of planned, best test bits/dim (per code for codes), and state
    (finished, interrupted, running, or stopped: killed while training)."""
    found = run_files.list_runs(runs_dir)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in found], indent=2))
        return
    if not found:
        common.out.print(f"no runs in {runs_dir}/ yet; start one with `pixelcnn train`")
        return
    table = Table(show_edge=False)
    mixed = any(r.codes for r in found)  # then each figure says its unit: bits per dim or per code
    for column, justify in (("run", "left"), ("dataset", "left"), ("model", "left"), ("epochs", "right"),
                            ("best test bits" if mixed else "best test bits/dim", "right"), ("state", "left"), ("updated", "left")):
        table.add_column(column, justify=justify, no_wrap=column in ("epochs", "state", "updated") or column.startswith("best"))
    for r in found:
        model = f"{r.model} ({r.preset})" if r.preset else r.model
        unit = ("/code" if r.codes else "/dim") if mixed else ""
        best = "-" if r.best_test_bits_per_dim is None else f"{r.best_test_bits_per_dim:.4f}{unit}"
        state = f"[{STATE_STYLES.get(r.state, 'white')}]{r.state}[/]"
        when = datetime.fromtimestamp(r.updated).strftime("%m-%d %H:%M")
        table.add_row(r.name, r.dataset, model, f"{r.epochs_done}/{r.epochs_planned}", best, state, when)
    common.print_whole(table)  # `pixelcnn runs | grep` finds a run by its name, dataset or preset


@user_errors
def plot(
    run_names: Annotated[list[str], typer.Argument(metavar="RUN...", help="Run folders, or run names under --runs-dir")],
    output: Annotated[str, typer.Option("--output", "-o", help="PNG file to write")] = "curves.png",
    runs_dir: RunsFolder = "runs",
) -> None:
    """Train and test bits/dim (bits/code for codes) per epoch, and the learning rate, of one or more runs on one figure."""
    from ..images import check_png_target
    from ..plots import training_curves

    target = check_png_target(output)
    curves, kinds = [], set()
    for name in run_names:
        folder = run_files.resolve_run(name, runs_dir)
        summary = run_files.summarize(folder)
        kinds.add(bool(summary and summary.codes))
        metrics = run_files.read_metrics(folder)
        if not metrics:
            raise ConfigError(f"run {folder} has no finished epoch yet: nothing to plot")
        curves.append((folder.name, metrics))
    training_curves(curves, target, "bits/code" if kinds == {True} else "bits/dim, bits/code" if len(kinds) > 1 else "bits/dim")
    common.out.print(f"wrote the curves of {len(curves)} run{'s' if len(curves) > 1 else ''} to {target}")
