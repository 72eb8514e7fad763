"""`pimainteno projects`: the configured projects and their last run."""

from __future__ import annotations

from typing import Any

import click

from pimainteno import records
from pimainteno.app import App
from pimainteno.config import check_project_path


def last_runs(app: App) -> dict[str, dict[str, Any]]:
    if not app.database_path.exists():
        return {}
    return records.last_runs(app.db)


def list_projects(app: App) -> list[dict[str, Any]]:
    cfg = app.config
    runs = last_runs(app)
    return [
        {
            "name": p.name,
            "path": str(p.path),
            "unit": p.unit,
            "mode": p.mode,
            "provider": cfg.provider_for(p),
            "test": p.test,
            "problem": check_project_path(p),
            "last_run": runs.get(p.name),
        }
        for p in cfg.projects
    ]


def print_projects(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("No projects configured: add a [[project]] table to the configuration.", err=True)
        return
    for r in rows:
        run = r["last_run"]
        last = f"last run #{run['id']} {run['status']} {run['started_at']}" if run else "never run"
        click.echo(f"{r['name']:<20} {r['mode']:<8} {r['unit']:<28} {last}")
        click.echo(f"  {r['path']}")
        if r["problem"]:
            click.echo(f"  problem: {r['problem']}")
