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
HEAL_ENDED = {"ok": "healed", "rolled_back": "rolled_back"}  # any other run status: "failed"
HEALS_COUNTED = ("queued", "healed", "proposed", "failed", "rolled_back")


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


RESTARTING = "restarting."  # status key prefix while a run restarts a unit (value: run id and deadline)


def announce_restart(db: sqlite_utils.Database, unit: str, run_id: int, until: float) -> None:
    """Until ``until`` (epoch seconds) or withdraw_restart, a failure of ``unit`` is run ``run_id``'s to handle."""
    set_status(db, RESTARTING + unit, json.dumps({"run_id": run_id, "until": until}))


def withdraw_restart(db: sqlite_utils.Database, unit: str) -> None:
    delete_status(db, RESTARTING + unit)


def restarting_run(db: sqlite_utils.Database, unit: str) -> int | None:
    """The run that is restarting ``unit`` right now (its restart check handles a failure), if any."""
    raw = status_value(db, RESTARTING + unit)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        return int(value["run_id"]) if time.time() < float(value["until"]) else None
    except (ValueError, KeyError, TypeError):
        return None


def add_restart(db: sqlite_utils.Database, *, project: str | None, unit: str, run_id: int | None) -> int:
    return insert(db, "restarts", {"project": project, "unit": unit, "run_id": run_id, "requested_at": now()})


def finish_restart(db: sqlite_utils.Database, restart_id: int, outcome: str, **values: Any) -> None:
    update(db, "restarts", restart_id, {"finished_at": now(), "outcome": outcome, **values})
