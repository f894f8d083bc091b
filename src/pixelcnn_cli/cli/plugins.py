"""``pixelcnn plugins``."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .. import registry
from . import common
from .common import user_errors


def plugin_rows() -> list[dict[str, Any]]:
    """One row per entry point found, each loaded (imported) to say whether it works."""
    rows = []
    for reg in (registry.datasets, registry.models):
        for entry in sorted(reg.all_entries(), key=lambda e: (e.name, e.distribution or "", e.value)):
            plugin = entry.load(reg.check)
            rows.append({
                "name": entry.name,
                "group": reg.group,
                "distribution": entry.distribution,
                "version": entry.version,
                "entry_point": entry.value,
                "status": entry.status,
                "loaded": entry.status == "ok" and plugin is not None,
                "error": None if entry.disabled else entry.error,
                "description": getattr(plugin, "description", None) if plugin is not None else None,
            })
    return rows


@user_errors
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON")] = False) -> None:
    """List the installed dataset and model plugins and whether they load."""
    rows = plugin_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(show_edge=False)
    for column in ("name", "group", "distribution", "version", "status"):
        table.add_column(column)
    for row in rows:
        if row["status"] == "ok":
            status = "[green]ok[/]"
        elif row["status"] == "disabled":
            status = "[yellow]disabled[/]"
        else:
            status = f"[red]error[/]: {escape(row['error'] or '')}"
        table.add_row(row["name"], row["group"], row["distribution"] or f"- ({row['entry_point']})",
                      row["version"] or "-", status)
    common.print_whole(table)
    broken = sum(1 for row in rows if row["status"] == "error")
    if broken:
        common.out.print(f"{broken} plugin(s) failed; every other plugin and command works without them")
    if registry.plugins_disabled():
        common.out.print(f"third-party plugins are switched off ({registry.DISABLE_ENV}={os.environ.get(registry.DISABLE_ENV)})")
