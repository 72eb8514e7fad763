"""`pimainteno status`: schedulers, monitors, the queue, latest runs and model usage at a glance."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Any

import click

from pimainteno import records
from pimainteno.app import App
from pimainteno.records import read
from pimainteno.words import plural

_RUNS = "SELECT id, project, trigger, status, step, started_at, duration_s, error FROM runs ORDER BY id DESC LIMIT 10"
_FAILURES = "SELECT id, project, unit, detected_at, result, exit_status, heal FROM failures ORDER BY id DESC LIMIT 5"
# a fixer run (the `command` provider) is no model call: no tokens, no cost; counted apart
_USAGE = (
    "SELECT project, sum(provider != 'command') AS calls, sum(provider != 'command' AND outcome IS NOT 'ok') "
    "AS failed, coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens, "
    "sum(provider = 'command') AS fixer_runs, sum(provider = 'command' AND outcome IS NOT 'ok') AS fixer_failed "
    "FROM llm_calls WHERE started_at >= ? GROUP BY project ORDER BY project"
)


def status(app: App) -> dict[str, Any]:
    cfg = app.config
    queue = sorted(p.name for p in cfg.queue_dir.glob("*.json")) if cfg.queue_dir.is_dir() else []
    report: dict[str, Any] = {
        "config": str(cfg.path),
        "database": str(app.database_path),
        "scheduler": {"enabled": cfg.scheduler.enabled, "schedule": cfg.scheduler.schedule},
        "systemd_monitor": {"enabled": cfg.monitor.enabled, "units": cfg.monitored_units()},
        "queue": {"dir": str(cfg.queue_dir), "pending": queue},
        "heartbeats": {},
        "runs": [],
        "failures": [],
        "usage": [],
        "warnings": warnings(app),
    }
    if not app.database_path.exists():
        return report
    if cfg.replicate is not None:  # one line: is the fleet's replica keeping up (docs/fleet.md)
        from pimainteno import fleet_units

        state, detail, fix = fleet_units.lag_line(cfg.replicate, app.database_path)
        report["replication"] = {"status": state, "detail": detail, "fix": fix}
    try:  # plain sqlite3 (no sqlite-utils import, no migration): status only reads
        report.update(_read_fast(app))
    except (
        sqlite3.Error
    ):  # a file older than the code, or unreadable: open it the usual way (migrates; one-line errors)
        report.update(_read(app.db.conn))
    watched = report["heartbeats"].get("systemd.units")
    if watched:  # what the running watcher really watches
        with contextlib.suppress(ValueError, TypeError):
            report["systemd_monitor"]["units"] = list(json.loads(watched["value"]))
    return report


def _read_fast(app: App) -> dict[str, Any]:
    conn = read.connect(app.database_path)
    try:
        return _read(conn)
    finally:
        conn.close()


def _read(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        "heartbeats": read.get_status(conn),
        "runs": read.rows(conn, _RUNS),
        "failures": read.rows(conn, _FAILURES),
        "usage": read.rows(conn, _USAGE, [records.now(24 * 3600)]),
    }


def warnings(app: App) -> list[str]:
    """Things that work but may not for long: a codex outside the tested range (never an error)."""
    cfg = app.config
    used = {cfg.provider_for(p) for p in cfg.projects} or {cfg.llm.provider}
    if "codex" not in used:
        return []
    from pimainteno.providers.codex_version import version_warning

    found = version_warning(cfg.llm)
    return [found] if found else []


STALE_AFTER = 60  # seconds; `watch` writes its heartbeat every 5


def print_status(r: dict[str, Any]) -> None:
    beats = r["heartbeats"]

    def beat(key: str) -> str:
        b = beats.get(key)
        if not b:
            return "no heartbeat yet"
        text = f"{b['value']} (at {b['updated_at']})"
        if b["value"] in ("listening", "connecting") and b["updated_at"] < records.now(STALE_AFTER):
            text += f"; stale: no heartbeat for over {STALE_AFTER}s, is the watch running?"
        return text

    s, m = r["scheduler"], r["systemd_monitor"]
    click.echo(f"config     {r['config']}")
    click.echo(f"database   {r['database']}")
    sched = f"enabled, {s['schedule']}" if s["enabled"] else "disabled"
    click.echo(f"scheduler  {sched}; {beat('scheduler.status')}")
    units = f"watching {', '.join(m['units'])}" if m["units"] else "no units"
    click.echo(f"monitor    {'enabled' if m['enabled'] else 'disabled'} ({units}); {beat('systemd.status')}")
    click.echo(f"queue      {len(r['queue']['pending'])} pending in {r['queue']['dir']}")
    if rep := r.get("replication"):
        click.echo(f"replicate  {rep['status']}: {rep['detail']}" + (f" — {rep['fix']}" if rep["fix"] else ""))
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
        if u["calls"]:
            click.echo(
                f"model calls (24h) {u['project']}: {plural(u['calls'], 'call')}, {u['failed']} failed, "
                f"{u['input_tokens']} in / {u['output_tokens']} out tokens"
            )
        if u["fixer_runs"]:
            click.echo(f"fixer runs (24h) {u['project']}: {plural(u['fixer_runs'], 'run')}, {u['fixer_failed']} failed")
    for w in r["warnings"]:
        click.echo(f"warning    {w}")
