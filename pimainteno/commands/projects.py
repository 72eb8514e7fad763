"""`pimainteno projects`: the configured projects and their last run."""

from __future__ import annotations

from typing import Any

import click

from pimainteno.app import App
from pimainteno.config import check_project_path


def last_runs(app: App) -> dict[str, dict[str, Any]]:
    if not app.database_path.exists():
        return {}
    db = app.db
    rows = db.conn.execute(
        "SELECT r.project, r.id, r.trigger, r.status, r.step, r.started_at, r.finished_at, r.error "
        "FROM runs r JOIN (SELECT project, max(id) AS id FROM runs GROUP BY project) m ON r.id = m.id"
    ).fetchall()
    keys = ("id", "trigger", "status", "step", "started_at", "finished_at", "error")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


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
