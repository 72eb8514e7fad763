"""The overview's and the JSON API's reads: plain functions over one sqlite3 connection.

Every query is bounded (LIMIT, or a time window capped by LIMIT) and walks a (project, time)
index, so the overview costs the same with ten rows or ten million. No COUNT(*) over a table.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MAX_PROJECTS = 100
RUNS = 10
COMMITS = 10
FAILURES = 5
CALLS = 10
TRIGGERS = 5
RESTARTS = 5
PENDING = 5
PENDING_SCAN = 200
USAGE_WINDOW = timedelta(days=1)
USAGE_CAP = 5000  # calls summed per project in the window, at most
QUEUE_SCAN = 1000  # queue files counted, at most
QUEUE_READ = 50  # queue files opened to show what they ask for


def rows(conn: sqlite3.Connection, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def one(conn: sqlite3.Connection, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> dict[str, Any] | None:
    found = rows(conn, sql, params)
    return found[0] if found else None


def _since(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def heartbeats(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    found = rows(conn, "SELECT key, value, updated_at FROM status ORDER BY key LIMIT 200")
    return {r["key"]: {"value": r["value"], "updated_at": r["updated_at"]} for r in found}


def project_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return rows(
        conn,
        "SELECT name, path, unit, remote, branch, mode, provider, proof, updated_at FROM projects ORDER BY name LIMIT ?",
        [MAX_PROJECTS],
    )


def last_run(conn: sqlite3.Connection, project: str) -> dict[str, Any] | None:
    return one(
        conn,
        "SELECT id, trigger, status, step, started_at, finished_at, duration_s, error FROM runs "
        "WHERE project = ? ORDER BY started_at DESC, id DESC LIMIT 1",
        [project],
    )


def latest_summary(conn: sqlite3.Connection, project: str) -> dict[str, Any] | None:
    return one(
        conn,
        "SELECT id, head, created_at, provider, text FROM summaries WHERE project = ? "
        "ORDER BY created_at DESC, id DESC LIMIT 1",
        [project],
    )


_PROPOSAL = (
    "SELECT id, run_id, created_at, updated_at, base_head, provider, reason, failure_id, status, status_reason, "
    "files, added, removed, diff FROM proposals"
)


def proposal(conn: sqlite3.Connection, proposal_id: int) -> dict[str, Any] | None:
    return one(conn, f"SELECT project, {_PROPOSAL.removeprefix('SELECT ')} WHERE id = ?", [proposal_id])


def project_detail(conn: sqlite3.Connection, project: str) -> dict[str, Any]:
    """Everything the overview shows for one project: a handful of small indexed queries."""
    p = [project]
    latest = one(conn, f"{_PROPOSAL} WHERE project = ? ORDER BY created_at DESC, id DESC LIMIT 1", p)
    # Waiting proposals among the newest PENDING_SCAN: bounded even when a project has thousands.
    pending = rows(
        conn,
        f"SELECT * FROM ({_PROPOSAL} WHERE project = ? ORDER BY created_at DESC, id DESC LIMIT ?) "
        "WHERE status = 'proposed' ORDER BY created_at DESC, id DESC LIMIT ?",
        [project, PENDING_SCAN, PENDING],
    )
    runs = rows(
        conn,
        "SELECT id, trigger, failure_id, started_at, finished_at, duration_s, status, step, steps, proposal_id, "
        "commit_sha, error FROM runs WHERE project = ? ORDER BY started_at DESC, id DESC LIMIT ?",
        [project, RUNS],
    )
    usage = one(
        conn,
        # a fixer run (the `command` provider) is no model call: no tokens; counted apart
        "SELECT coalesce(sum(provider IS NOT 'command'), 0) AS calls, "
        "coalesce(sum(provider IS NOT 'command' AND outcome IS NOT 'ok'), 0) AS failed, "
        "coalesce(sum(provider = 'command'), 0) AS fixer_runs, "
        "coalesce(sum(provider = 'command' AND outcome IS NOT 'ok'), 0) AS fixer_failed, "
        "coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(cached_tokens), 0) AS cached_tokens, "
        "coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(duration_s), 0) AS seconds "
        "FROM (SELECT provider, outcome, input_tokens, cached_tokens, output_tokens, duration_s FROM llm_calls "
        "WHERE project = ? AND started_at >= ? ORDER BY started_at DESC LIMIT ?)",
        [project, _since(USAGE_WINDOW), USAGE_CAP],
    )
    return {
        "summary": latest_summary(conn, project),
        "latest_proposal": latest,
        "pending": pending,
        "failures": rows(
            conn,
            "SELECT id, unit, detected_at, active_state, result, exit_code, exit_status, journal, source, heal, "
            "run_id FROM failures WHERE project = ? ORDER BY detected_at DESC, id DESC LIMIT ?",
            [project, FAILURES],
        ),
        "commits": rows(
            conn,
            "SELECT id, run_id, proposal_id, sha, kind, message, author, created_at, pushed_at, push_ref, "
            "push_error, reverted_by FROM commits WHERE project = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            [project, COMMITS],
        ),
        "runs": runs,
        "restarts": rows(
            conn,
            "SELECT id, unit, run_id, requested_at, finished_at, outcome, detail FROM restarts "
            "WHERE project = ? ORDER BY requested_at DESC, id DESC LIMIT ?",
            [project, RESTARTS],
        ),
        "calls": rows(
            conn,
            "SELECT id, run_id, provider, purpose, model, started_at, duration_s, outcome, input_tokens, "
            "cached_tokens, output_tokens, reasoning_tokens, error FROM llm_calls "
            "WHERE project = ? ORDER BY started_at DESC, id DESC LIMIT ?",
            [project, CALLS],
        ),
        "usage": usage,
        "triggers": rows(
            conn,
            "SELECT id, kind, source, reason, proposal_id, requested_at, consumed_at, run_id, status, detail "
            "FROM triggers WHERE project = ? ORDER BY requested_at DESC, id DESC LIMIT ?",
            [project, TRIGGERS],
        ),
    }


def recent_runs(conn: sqlite3.Connection, limit: int = 10) -> list[dict[str, Any]]:
    return rows(
        conn,
        "SELECT id, project, trigger, status, step, started_at, finished_at, duration_s, error FROM runs "
        "ORDER BY started_at DESC, id DESC LIMIT ?",
        [limit],
    )


@dataclass
class Queue:
    known: bool  # False: no configuration, so no queue directory
    pending: int = 0
    more: bool = False  # more files than were counted
    items: list[dict[str, Any]] | None = None
    problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"known": self.known, "pending": self.pending, "more": self.more, "items": self.items or []}


def queue(queue_dir: Path | None) -> Queue:
    """Pending trigger files (queue_dir/*.json), counted up to QUEUE_SCAN and read up to QUEUE_READ."""
    if queue_dir is None:
        return Queue(known=False)
    names: list[str] = []
    more = False
    try:
        with os.scandir(queue_dir) as it:
            for entry in it:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    if len(names) >= QUEUE_SCAN:
                        more = True
                        break
                    names.append(entry.name)
    except FileNotFoundError:
        return Queue(known=True)
    except OSError as e:
        return Queue(known=True, problem=f"cannot read the queue directory ({e.strerror})")
    items = []
    for name in sorted(names)[:QUEUE_READ]:
        items.append({"file": name, **_trigger(queue_dir / name)})
    return Queue(known=True, pending=len(names), more=more, items=items)


def _trigger(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8")[:65536])
    except (OSError, ValueError):
        return {"project": None, "kind": None, "source": None, "requested_at": None}
    if not isinstance(data, dict):
        data = {}
    keys = ("project", "kind", "source", "reason", "proposal_id", "requested_at")
    return {k: data.get(k) if isinstance(data.get(k), (str, int, type(None))) else str(data.get(k)) for k in keys}
