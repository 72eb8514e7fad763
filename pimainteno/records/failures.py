"""`failures` of monitored units and the `restarts` pimainteno made."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from pimainteno.records.base import delete_status, insert, now, set_status, status_value, update

if TYPE_CHECKING:
    import sqlite_utils


def add_failure(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    return insert(db, "failures", {"detected_at": now(), **row})


def update_failure(db: sqlite_utils.Database, failure_id: int, **values: Any) -> None:
    update(db, "failures", failure_id, values)


def failure_row(db: sqlite_utils.Database, failure_id: int) -> dict[str, Any] | None:
    found = list(db.table("failures").rows_where("id = ?", [failure_id]))
    return found[0] if found else None


def known_failure(db: sqlite_utils.Database, unit: str, invocation_id: str, result: str) -> dict[str, Any] | None:
    """The failure already recorded for this invocation of the unit (by `watch` or the OnFailure= heal)."""
    found = list(db.table("failures").rows_where("unit = ? AND invocation_id = ? AND result = ?",
                                                 [unit, invocation_id, result], select="id, heal", limit=1))  # fmt: skip
    return found[0] if found else None


# A queued heal ends as one of these when its run ends (end_heal); each still counts toward heal_limit.
# "nothing": the heal found nothing to do (the unit was healthy again, or the change it got was one that
# was rolled back or rejected before); it still asked the model, so it counts like the others.
HEAL_ENDED = {"ok": "healed", "rolled_back": "rolled_back", "nothing": "nothing"}  # any other run status: "failed"
HEALS_COUNTED = ("queued", "healed", "proposed", "failed", "rolled_back", "nothing")


def last_healthy_restart(db: sqlite_utils.Database, unit: str) -> str | None:
    """When the last restart of ``unit`` that was found healthy finished."""
    found = list(db.table("restarts").rows_where("unit = ? AND outcome = 'healthy'", [unit], select="finished_at",
                                                  order_by="id DESC", limit=1))  # fmt: skip
    return found[0]["finished_at"] if found else None


def latest_failure_at(db: sqlite_utils.Database, unit: str) -> str | None:
    """When ``unit`` last failed, as recorded (a coalesced row's last failure)."""
    row = db.execute("SELECT max(coalesce(last_at, detected_at)) FROM failures WHERE unit = ?", [unit]).fetchone()
    return row[0] if row else None


def recent_failure(db: sqlite_utils.Database, unit: str, since: str) -> dict[str, Any] | None:
    """The latest failure row of ``unit`` whose last failure is at or after ``since`` (to coalesce into)."""
    found = list(db.table("failures").rows_where("unit = ? AND coalesce(last_at, detected_at) >= ?", [unit, since],
                                                 order_by="id DESC", limit=1))  # fmt: skip
    return found[0] if found else None


def prune_failures(db: sqlite_utils.Database, before: str) -> int:
    """Delete failure rows whose last failure is older than ``before``; how many went."""
    cursor = db.execute("DELETE FROM failures WHERE coalesce(last_at, detected_at) < ?", [before])
    return int(cursor.rowcount or 0)


def unfinished_restarts(db: sqlite_utils.Database, project: str) -> list[dict[str, Any]]:
    """The project's `restarts` rows without an outcome (their run died while restarting)."""
    return list(db.table("restarts").rows_where("project = ? AND outcome IS NULL", [project], order_by="id"))


def restarting_keys(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """Every announced restart: unit -> {run_id, since, until, and ended once its check is over}."""
    found: dict[str, dict[str, Any]] = {}
    for row in db.table("status").rows_where("key LIKE ?", [RESTARTING + "%"], select="key, value"):
        try:
            found[row["key"][len(RESTARTING) :]] = dict(json.loads(row["value"]))
        except (ValueError, TypeError):
            found[row["key"][len(RESTARTING) :]] = {}
    return found


def rolled_back_heals(db: sqlite_utils.Database, unit: str, since: str) -> list[dict[str, Any]]:
    """Heals of ``unit`` whose run ended `rolled_back` since ``since``: the run, its failure and that journal."""
    return list(db.query(
        "SELECT r.id AS run_id, f.id AS failure_id, f.journal FROM runs r JOIN failures f ON f.id = r.failure_id "
        "WHERE f.unit = ? AND r.status = 'rolled_back' AND r.finished_at >= ? ORDER BY r.id DESC",
        [unit, since],
    ))  # fmt: skip


def count_heals_since(db: sqlite_utils.Database, unit: str, since: str) -> int:
    marks = ", ".join("?" * len(HEALS_COUNTED))
    return int(db.table("failures").count_where(f"unit = ? AND heal IN ({marks}) AND detected_at >= ?",
                                                [unit, *HEALS_COUNTED, since]))  # fmt: skip


def end_heal(db: sqlite_utils.Database, failure_id: int, run_id: int, run_status: str, committed: bool) -> str | None:
    """Record how a failure's heal ended, from its run: healed, proposed (waits for a person), rolled_back or failed.

    Only a heal that is still `queued` changes (a failure the watcher left to a restarting run, or one
    recorded as gave_up, keeps its mark). Returns the new mark, or None when nothing changed.
    """
    if run_status in ("interrupted", "already-running"):
        return None  # the trigger stays queued or is run again: the heal has not ended
    row = failure_row(db, failure_id)
    if row is None or row.get("heal") != "queued":
        return None
    mark = HEAL_ENDED.get(run_status, "failed")
    if mark == "healed" and not committed:
        mark = "proposed"
    update(db, "failures", failure_id, {"heal": mark, "run_id": run_id})
    return mark


RESTARTING = "restarting."  # status key prefix while a run restarts a unit (value: run id, its window)


def _window(db: sqlite_utils.Database, unit: str) -> dict[str, Any]:
    try:
        value = json.loads(status_value(db, RESTARTING + unit) or "")
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def announce_restart(db: sqlite_utils.Database, unit: str, run_id: int, until: float) -> None:
    """Until ``until`` (epoch seconds) or end_restart, a failure of ``unit`` is run ``run_id``'s to handle.

    The same run restarting the unit again (after its rollback) widens its window: a crash of the first
    restart that the watcher sees only now is still this run's."""
    before = _window(db, unit)
    since = before.get("since") if before.get("run_id") == run_id else None
    since = float(since) if isinstance(since, (int, float)) else time.time()
    set_status(db, RESTARTING + unit, json.dumps({"run_id": run_id, "since": since, "until": until}))


def end_restart(db: sqlite_utils.Database, unit: str, *, at: float | None = None) -> None:
    """The run's restart check gave its verdict at ``at`` (epoch seconds; None: now): a failure after it is
    new, one within the window that reaches the watcher late (a loaded machine) is still the run's."""
    value = _window(db, unit)
    if "run_id" not in value:
        withdraw_restart(db, unit)
        return
    set_status(db, RESTARTING + unit, json.dumps({**value, "until": time.time() if at is None else at, "ended": True}))


def withdraw_restart(db: sqlite_utils.Database, unit: str) -> None:
    delete_status(db, RESTARTING + unit)


def restarting_run(db: sqlite_utils.Database, unit: str, at: float | None = None) -> int | None:
    """The run whose restart of ``unit`` a failure at ``at`` (epoch seconds, systemd's own time of the
    failure; None: now) belongs to, if any: the run handles it (its restart check sees it)."""
    raw = status_value(db, RESTARTING + unit)
    if raw is None:
        return None
    at = time.time() if at is None else at
    try:
        value = json.loads(raw)
        run_id, since, until = int(value["run_id"]), float(value.get("since", 0)), float(value["until"])
    except (ValueError, KeyError, TypeError):
        return None
    if not since <= at <= until:
        return None
    if not value.get("ended") and not run_alive(db, run_id):
        return None  # its process died: the failure is a new one to heal (recover() finishes that run's restart)
    return run_id


def run_alive(db: sqlite_utils.Database, run_id: int) -> bool:
    """Whether run ``run_id`` is still `running` in a live process."""
    import os

    found = list(db.table("runs").rows_where("id = ?", [run_id], select="status, pid", limit=1))
    if not found or found[0]["status"] != "running" or not found[0]["pid"]:
        return False
    try:
        os.kill(int(found[0]["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def add_restart(db: sqlite_utils.Database, *, project: str | None, unit: str, run_id: int | None) -> int:
    return insert(db, "restarts", {"project": project, "unit": unit, "run_id": run_id, "requested_at": now()})


def finish_restart(db: sqlite_utils.Database, restart_id: int, outcome: str, **values: Any) -> None:
    update(db, "restarts", restart_id, {"finished_at": now(), "outcome": outcome, **values})
