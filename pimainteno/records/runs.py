"""`runs` (one row per run, updated after every step), `summaries`, `llm_calls` and `triggers`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pimainteno.records.base import insert, now, update

if TYPE_CHECKING:
    import sqlite_utils


def start_run(db: sqlite_utils.Database, project: str, trigger: str, failure_id: int | None = None) -> int:
    """A `running` row owned by this process; with a failure, the failure is marked as this run's heal."""
    run_id = insert(db, "runs", {
        "project": project, "trigger": trigger, "failure_id": failure_id, "started_at": now(), "status": "running",
        "pid": os.getpid(), "steps": [],
    })  # fmt: skip
    if failure_id is not None and db.table("failures").count_where("id = ?", [failure_id]):
        update(db, "failures", failure_id, {"run_id": run_id})
    return run_id


def update_run(db: sqlite_utils.Database, run_id: int, **values: Any) -> None:
    update(db, "runs", run_id, values)


def finish_run(db: sqlite_utils.Database, run_id: int, status: str, *, duration_s: float, error: str | None,
               proposal_id: int | None, commit_sha: str | None) -> None:  # fmt: skip
    update(db, "runs", run_id, {
        "status": status, "finished_at": now(), "duration_s": duration_s, "error": error,
        "proposal_id": proposal_id, "commit_sha": commit_sha,
    })  # fmt: skip


def running_runs(db: sqlite_utils.Database, project: str) -> list[tuple[int, int | None]]:
    """(run id, pid) of the project's runs still marked `running`."""
    return [(r["id"], r["pid"]) for r in db.table("runs").rows_where("project = ? AND status = 'running'", [project],
                                                                       select="id, pid")]  # fmt: skip


def last_runs(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """Each project's latest run."""
    found = db.query(
        "SELECT r.project, r.id, r.trigger, r.status, r.step, r.started_at, r.finished_at, r.error "
        "FROM runs r JOIN (SELECT project, max(id) AS id FROM runs GROUP BY project) m ON r.id = m.id"
    )
    return {r.pop("project"): r for r in found}


# --- summaries -----------------------------------------------------------------------------------


def cached_summary(db: sqlite_utils.Database, project: str, head: str) -> str | None:
    found = list(db.table("summaries").rows_where("project = ? AND head = ?", [project, head], order_by="id DESC",
                                                  limit=1, select="text"))  # fmt: skip
    return found[0]["text"] if found else None


def last_summary(db: sqlite_utils.Database, project: str) -> str | None:
    """The project's latest summary at any HEAD: a heal's context without a model call to refresh it."""
    found = list(db.table("summaries").rows_where("project = ?", [project], order_by="id DESC", limit=1,
                                                  select="text"))  # fmt: skip
    return found[0]["text"] if found else None


def add_summary(db: sqlite_utils.Database, project: str, head: str, provider: str, text: str,
                llm_call_id: int | None) -> int:  # fmt: skip
    return insert(db, "summaries", {
        "project": project, "head": head, "created_at": now(), "provider": provider, "text": text,
        "llm_call_id": llm_call_id,
    })  # fmt: skip


# --- llm_calls and triggers ----------------------------------------------------------------------


def add_llm_call(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    """One provider call (errors scrubbed of secrets like every stored text)."""
    return insert(db, "llm_calls", row)


def add_trigger(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    """One consumed queue trigger, as the drain recorded it."""
    return insert(db, "triggers", row)
