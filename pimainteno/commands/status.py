"""`pimainteno status`: schedulers, monitors, the queue, latest runs and model usage at a glance."""

from __future__ import annotations

from typing import Any

import click

from pimainteno import records
from pimainteno.app import App


def status(app: App) -> dict[str, Any]:
    cfg = app.config
    queue = sorted(p.name for p in cfg.queue_dir.glob("*.json")) if cfg.queue_dir.is_dir() else []
    report: dict[str, Any] = {
        "config": str(cfg.path),
        "database": str(app.database_path),
        "scheduler": {"enabled": cfg.scheduler.enabled, "schedule": cfg.scheduler.schedule},
        "systemd_monitor": {"enabled": cfg.monitor.enabled, "units": list(cfg.monitor.units)},
        "queue": {"dir": str(cfg.queue_dir), "pending": queue},
        "heartbeats": {},
        "runs": [],
        "failures": [],
        "usage": [],
    }
    if not app.database_path.exists():
        return report
    db = app.db
    report["heartbeats"] = records.get_status(db)
    report["runs"] = records.rows(
        db,
        "SELECT id, project, trigger, status, step, started_at, duration_s, error FROM runs ORDER BY id DESC LIMIT 10",
    )
    report["failures"] = records.rows(
        db, "SELECT id, project, unit, detected_at, result, exit_status, heal FROM failures ORDER BY id DESC LIMIT 5"
    )
    report["usage"] = records.rows(
        db,
        "SELECT project, count(*) AS calls, sum(outcome != 'ok') AS failed, "
        "coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens "
        "FROM llm_calls WHERE started_at >= ? GROUP BY project ORDER BY project",
        [records.now(24 * 3600)],
    )
    return report


STALE_AFTER = 60  # seconds; `watch` writes its heartbeat every 5


def print_status(r: dict[str, Any]) -> None:
    beats = r["heartbeats"]

    def beat(key: str) -> str:
        b = beats.get(key)
        if not b:
            return "no heartbeat yet"
        text = f"{b['value']} (at {b['updated_at']})"
        if b["value"] == "listening" and b["updated_at"] < records.now(STALE_AFTER):
            text += f"; stale: no heartbeat for over {STALE_AFTER}s, is the watch running?"
        return text

    s, m = r["scheduler"], r["systemd_monitor"]
    click.echo(f"config     {r['config']}")
    click.echo(f"database   {r['database']}")
    sched = f"enabled, {s['schedule']}" if s["enabled"] else "disabled"
    click.echo(f"scheduler  {sched}; {beat('scheduler.status')}")
    units = ", ".join(m["units"]) or "no units"
    click.echo(f"monitor    {'enabled' if m['enabled'] else 'disabled'} ({units}); {beat('systemd.status')}")
    click.echo(f"queue      {len(r['queue']['pending'])} pending in {r['queue']['dir']}")
    for key, b in beats.items():  # pipeline/pending.py: pushes held until the owner reconciles
        if key.startswith("diverged."):
            click.echo(f"diverged   {key.removeprefix('diverged.')}: {b['value']} (since {b['updated_at']})")
    click.echo("runs:" if r["runs"] else "runs       none yet")
    for run in r["runs"]:
        took = f" {run['duration_s']:.1f}s" if run["duration_s"] is not None else ""
        err = f" — {run['error']}" if run["error"] else ""
        click.echo(
            f"  #{run['id']:<5} {run['project']:<16} {run['status']:<12} {run['trigger']:<10} {run['started_at']}{took}{err}"
        )
    for f in r["failures"]:
        click.echo(f"failure #{f['id']} {f['unit']} {f['result']} at {f['detected_at']} (heal: {f['heal']})")
    for u in r["usage"]:
        click.echo(
            f"model calls (24h) {u['project']}: {u['calls']} calls, {u['failed']} failed, "
            f"{u['input_tokens']} in / {u['output_tokens']} out tokens"
        )
