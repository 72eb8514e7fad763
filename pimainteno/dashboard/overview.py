"""The overview page's data: read in one pass over one connection, then shaped for the template."""

from __future__ import annotations

import sqlite3
from typing import Any

from markupsafe import Markup

from pimainteno.config import Config
from pimainteno.dashboard import queries, render, runtime
from pimainteno.records.base import proof_of

# Which `status` keys each service card shows (by prefix); the rest are listed apart, folded.
DIVERGED = "diverged."  # pipeline.pending's mark: a project whose remote moved on and cannot be pushed to
CARDS = {"scheduler": ("scheduler.",), "watcher": ("systemd.", "watch."), "queue": ("drain.", "queue.")}


def merge_projects(cfg: Config | None, db_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Projects from the database, refined by the configuration (which alone may be run)."""
    found: dict[str, dict[str, Any]] = {}
    for r in db_rows:
        found[r["name"]] = {
            "name": r["name"],
            "unit": r["unit"],
            "mode": r["mode"],
            "provider": r["provider"],
            "proof": r.get("proof"),
            "waits": r["mode"] == "propose",
            "configured": False,
        }
    for p in cfg.projects if cfg else ():
        found[p.name] = {
            "name": p.name,
            "unit": p.unit,
            "mode": p.mode,
            "provider": cfg.provider_for(p) if cfg else None,
            "proof": proof_of(p),
            # Proposals wait for a person in propose mode, and without a test command (unproven = "propose").
            "waits": p.mode == "propose" or (not p.test and p.unproven == "propose"),
            "configured": True,
        }
    return sorted(found.values(), key=lambda p: p["name"])[: queries.MAX_PROJECTS]


def collect(conn: sqlite3.Connection, cfg: Config | None) -> dict[str, Any]:
    """Runs in Datasette's database thread: every read the page needs."""
    projects = merge_projects(cfg, queries.project_rows(conn))
    for p in projects:
        p.update(queries.project_detail(conn, p["name"]))
    return {
        "heartbeats": queries.heartbeats(conn),
        "projects": projects,
        "queue": queries.queue(cfg.queue_dir if cfg else None),
        "database": True,
    }


def empty(cfg: Config | None) -> dict[str, Any]:
    """What the page shows when no pimainteno database is attached."""
    blank = {"summary": None, "latest_proposal": None, "usage": None}
    lists = ("pending", "failures", "commits", "runs", "restarts", "calls", "triggers")
    projects = [{**p, **blank, **{k: [] for k in lists}} for p in merge_projects(cfg, [])]
    return {"heartbeats": {}, "projects": projects, "queue": queries.queue(None), "database": False}


def _redact_all(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return render.redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redact_all(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_all(v, secrets) for v in value]
    return value


def _beat(beats: dict[str, dict[str, Any]], key: str, limit: int = 200) -> dict[str, Any]:
    b = beats[key]
    value = b["value"] or ""
    shown = value if len(value) <= limit else value[: limit - 1] + "…"
    return {
        "key": key,
        **b,
        "value": shown,
        "ago": render.ago(b["updated_at"]),
        "when": render.short_time(b["updated_at"]),
    }


def _shape_project(p: dict[str, Any], queued: list[dict[str, Any]], diverged: dict[str, Any] | None) -> dict[str, Any]:
    summary = p["summary"]
    if summary:
        summary["html"] = render.markdown_html(summary["text"])
    pending_ids = {x["id"] for x in p["pending"]}
    for prop in p["pending"]:
        prop["diff_html"] = render.diff_html(prop["diff"])
    latest = p["latest_proposal"]
    if latest:
        latest["diff_html"] = render.diff_html(latest["diff"])
        latest["awaiting"] = latest["id"] in pending_ids
    for f in p["failures"]:
        f["journal_html"] = render.pre(f["journal"]) if f["journal"] else Markup("")
    for run in p["runs"]:
        run["steps_html"] = render.steps_html(run["steps"])
    return {
        **p,
        "approvals": p["waits"] and p["configured"],
        "queued": queued,
        "diverged": diverged,  # the `diverged.<name>` status key: why, and since when
    }


def context(datasette: Any, data: dict[str, Any], loaded: runtime.Loaded, can_run: bool) -> dict[str, Any]:
    cfg = loaded.config
    data = _redact_all({k: v for k, v in data.items() if k != "queue"}, runtime.secrets(datasette)) | {
        "queue": data["queue"]
    }
    beats = data["heartbeats"]
    queue = data["queue"]
    by_project: dict[str, list[dict[str, Any]]] = {}
    for item in queue.items or []:
        by_project.setdefault(str(item.get("project")), []).append(item)
    cards: dict[str, list[dict[str, Any]]] = {name: [] for name in CARDS}
    other: list[dict[str, Any]] = []
    names = {p["name"] for p in data["projects"]}
    mine = [k for k in beats if k.startswith(DIVERGED) and k.removeprefix(DIVERGED) in names]
    diverged = {k.removeprefix(DIVERGED): _beat(beats, k, 2000) for k in mine}
    for key in sorted(set(beats) - set(mine)):  # a project's diverged mark is shown on that project
        card = next((name for name, prefixes in CARDS.items() if key.startswith(prefixes)), None)
        (cards[card] if card else other).append(_beat(beats, key))
    return {
        "database_name": runtime.database_name(datasette),
        "has_database": data["database"],
        "config_problem": loaded.problem,
        "can_run": can_run and cfg is not None,
        "may_run": can_run,
        "scheduler": {
            "config": {"enabled": cfg.scheduler.enabled, "schedule": cfg.scheduler.schedule} if cfg else None,
            "beats": cards["scheduler"],
        },
        "watcher": {
            "config": {"enabled": cfg.monitor.enabled, "units": ", ".join(cfg.monitor.units)} if cfg else None,
            "beats": cards["watcher"],
        },
        "queue": queue,
        "queue_beats": cards["queue"],
        "other_beats": other,
        "projects": [
            _shape_project(p, by_project.get(p["name"], []), diverged.get(p["name"])) for p in data["projects"]
        ],
        "ago": render.ago,
        "short_time": render.short_time,
    }
