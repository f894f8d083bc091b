"""``pixelcnn plugins``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from .. import registry
from . import common
from .common import user_errors


@user_errors
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON")] = False) -> None:
    """List the installed dataset and model plugins and whether they load."""
    rows = []
    for reg in (registry.datasets, registry.models):
        for name, entry in sorted(reg.entries().items()):
            plugin = entry.load(reg.check)
            rows.append({
                "name": name,
                "group": reg.group,
                "distribution": entry.distribution,
                "version": entry.version,
                "loaded": entry.error is None and plugin is not None,
                "error": entry.error,
                "description": getattr(plugin, "description", None),
            })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(show_edge=False)
    for column in ("name", "group", "distribution", "version", "status"):
        table.add_column(column)
    for row in rows:
        status = "[green]ok[/]" if row["loaded"] else f"[red]error[/]: {row['error']}"
        table.add_row(row["name"], row["group"], row["distribution"] or "-", row["version"] or "-", status)
    common.out.print(table)
