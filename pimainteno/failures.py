"""Failures of monitored units: record each one, rate-limit heals per unit, queue the heal.

Used by `watch` (D-Bus signals, milliseconds after the failure) and `pimainteno heal UNIT`, the
daemon-less path: an `OnFailure=pimainteno-heal@%n.service` drop-in starts it with systemd's
``MONITOR_*`` variables. With both installed a failure is still recorded once: a failure is its
unit's invocation id and result.

The row is written first (the dashboard shows the failure at once), then the journal excerpt of
the failed run is added and the heal queued, or not:

    heal = queued    a `heal` trigger for the unit's project is in the queue
           gave_up   `heal_limit` heals of this unit within `heal_window` already: a crash loop
                     never becomes a patch loop; heals resume when the window has passed
           run       pimainteno itself was restarting the unit (run_id): that run rolls back
           none      no configured project has this unit
           held      a heal of this unit was rolled back within `heal_window` and this failure
                     looks the same (the fingerprint of its journal's last lines): no patch loop

Repeated failures of one unit within `[systemd_monitor] coalesce` seconds are one row (`count`,
`detected_at` of the first, `last_at` and the journal of the latest) as long as that row's heal has
not run yet, is running, or will not come; `prune()` (called by `watch`) drops rows older than
`retention_days`.

A failed health probe streak (`watch`, pimainteno/probing.py) is recorded the same way, with result
`probe`, source `probe`, and the probe's detail and output ahead of the journal.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import signal
import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pimainteno import notify, queue, records
from pimainteno.errors import PimaintenoError
from pimainteno.systemd import FailureEvent

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Config, Project
    from pimainteno.health import Probe

log = logging.getLogger("pimainteno")

JOURNAL_BYTES = 8000
JOURNAL_WAIT = 2.0  # journald may store a dying process's last lines a little after the failure


@dataclass(frozen=True)
class Recorded:
    failure_id: int
    unit: str
    project: str | None
    result: str
    exit_status: int
    heal: str  # queued, gave_up, run, none
    duplicate: bool = False  # already recorded (by the watch or the OnFailure= heal)
    detail: str = ""

    def line(self) -> str:
        what = "already recorded" if self.duplicate else f"heal {self.heal}"
        return f"failure #{self.failure_id} {self.unit} ({self.result}, status {self.exit_status}): {what}" + (
            f" — {self.detail}" if self.detail else ""
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def monitored_units(config: Config) -> list[str]:
    """`[systemd_monitor] units`, plus each project's unit when monitoring is enabled (Config.monitored_units)."""
    return config.monitored_units()


def record_failure(app: App, event: FailureEvent, *, source: str, probe: Probe | None = None) -> Recorded:
    """Record a failure (once per invocation), decide on a heal, add the journal, queue the heal.

    ``probe``: a failed health probe streak (result `probe`); its detail and output lead the journal."""

    def journal_now() -> str:
        text = _journal(app, event, wait=probe is None)  # only a dying process's last lines come late
        if probe is None:
            return text
        return f"Health probe failed: {probe.detail}\n{probe.output.strip()}\n\n{text}".replace("\n\n\n", "\n\n")

    from pimainteno.db import transaction

    cfg = app.config
    project = cfg.project_for_unit(event.unit)
    db = app.db
    journal: str | None = None
    peek = _coalesce_into(app, event)
    if peek is not None and peek["heal"] == "held":  # held for one failure: a different one is news
        journal = journal_now()
        if fingerprint(journal) != fingerprint(peek["journal"]):
            peek = None
    with transaction(db):  # the duplicate check, the rate limit and the insert are one decision
        if event.invocation_id:
            row = records.known_failure(db, event.unit, event.invocation_id, event.result)
            if row:
                return Recorded(row["id"], event.unit, project.name if project else None, event.result,
                                event.exit_status, row["heal"] or "none", duplicate=True)  # fmt: skip
        recent = _coalesce_into(app, event) if peek is not None else None
        if recent is not None:  # a crash loop is one row with a count, not a row per crash
            count = int(recent["count"] or 1) + 1
            records.update_failure(db, recent["id"], count=count, last_at=records.now(), result=event.result,
                                   exit_code=event.exit_code, exit_status=event.exit_status,
                                   invocation_id=event.invocation_id or None, active_state=event.active_state)  # fmt: skip
    if recent is not None:
        records.update_failure(db, recent["id"], journal=journal if journal is not None else journal_now())
        detail = f"failure #{recent['id']} again ({count} times since {recent['detected_at']})"
        log.info("%s failed (%s): %s", event.unit, event.result, detail)
        return Recorded(recent["id"], event.unit, project.name if project else None, event.result, event.exit_status,
                        recent["heal"] or "none", detail=detail)  # fmt: skip
    with transaction(db):
        heal, run_id, detail = "none", None, ""
        if project is None:
            detail = "no configured project has this unit"
        elif (run_id := records.restarting_run(db, event.unit, at=event.failed_at or None)) is not None:
            heal, detail = "run", f"run #{run_id} restarted it and rolls back"
        else:
            heals = records.count_heals_since(db, event.unit, records.now(cfg.monitor.heal_window))
            if heals >= cfg.monitor.heal_limit:
                heal = "gave_up"
                detail = (
                    f"{heals} heals within {cfg.monitor.heal_window:g}s already (heal_limit); "
                    f"no more until the window passes"
                )
            else:
                heal = "queued"
        failure_id = records.add_failure(db, {
            "project": project.name if project else None, "unit": event.unit,
            "active_state": event.active_state, "result": event.result, "exit_code": event.exit_code,
            "exit_status": event.exit_status, "invocation_id": event.invocation_id or None, "source": source,
            "heal": heal, "run_id": run_id,
        })  # fmt: skip
    journal = journal if journal is not None else journal_now()
    try:
        records.update_failure(db, failure_id, journal=journal)
    except sqlite3.OperationalError as e:  # locked or full now: the heal must still be queued (the row says so)
        log.warning("%s: failure #%d recorded without its journal excerpt (%s)", event.unit, failure_id, e)
    if heal == "queued" and (held := _held_back(app, event.unit, journal)):
        heal, detail = "held", held
        records.update_failure(db, failure_id, heal=heal)
    if heal == "queued":
        assert project is not None
        reason = f"{event.unit} failed ({event.result}, {event.exit_code or 'exit'} status {event.exit_status})"
        if probe is not None:
            reason = records.scrub(f"{event.unit} is active but its health probe failed: {probe.detail}")
        try:
            queue.enqueue(cfg.queue_dir, project.name, kind="heal", reason=reason, failure_id=failure_id,
                          source="on-failure" if source == "on-failure" else "watch")  # fmt: skip
        except PimaintenoError as e:
            records.update_failure(db, failure_id, heal="error")
            raise type(e)(f"failure #{failure_id} of {event.unit} recorded, but its heal was not queued: {e}") from None
        detail = f"queued for {project.name}"
    (log.warning if heal == "gave_up" else log.info)("%s failed (%s): %s", event.unit, event.result, detail or heal)
    recorded = Recorded(failure_id, event.unit, project.name if project else None, event.result, event.exit_status,
                        heal, detail=detail)  # fmt: skip
    notify.about_failure(app, recorded)  # bounded and never raises
    return recorded


def _coalesce_into(app: App, event: FailureEvent) -> dict[str, Any] | None:
    """The unit's failure row this one joins: one within `coalesce` seconds whose heal has not run yet
    (still queued), is running now, or will not come (gave up, no project, the restarting run's)."""
    window = app.config.monitor.coalesce
    if window <= 0:
        return None
    recent = records.recent_failure(app.db, event.unit, records.now(window))
    if recent is None:
        return None
    heal, run_id = recent["heal"], recent["run_id"]
    if heal == "queued":  # its heal has not started, or is running: this failure is that heal's too
        return recent if run_id is None or records.run_alive(app.db, run_id) else None
    if heal == "run":  # the run restarting the unit handles it, while it still does
        return recent if records.restarting_run(app.db, event.unit, at=event.failed_at or None) == run_id else None
    # No heal will come for it; any other mark (a heal that ended, an error) makes this one new.
    return recent if heal in ("gave_up", "none", "held") else None


FINGERPRINT_LINES = 5


def fingerprint(journal: str | None) -> str:
    """What a failure looks like: its journal's last lines with every number (times, pids, ports) and hex id
    blanked, so two crashes of the same bug match and a different one does not."""
    lines = [ln for ln in (journal or "").splitlines() if ln.strip()][-FINGERPRINT_LINES:]
    return "\n".join(_NUMBERS.sub("#", ln).strip() for ln in lines)


_NUMBERS = re.compile(r"\b[0-9a-f]{8,}\b|\d+", re.IGNORECASE)  # long hex ids, then any digits


def _held_back(app: App, unit: str, journal: str) -> str | None:
    """Why a new heal of ``unit`` waits: a heal of it was rolled back within `heal_window` and this failure
    looks the same (same fingerprint); None when it may go ahead."""
    window = app.config.monitor.heal_window
    for row in records.rolled_back_heals(app.db, unit, records.now(window)):
        if fingerprint(row["journal"]) == fingerprint(journal):
            return (
                f"a heal of the same failure (#{row['failure_id']}) was rolled back by run #{row['run_id']} within "
                f"{window:g}s (heal_window); not trying again until then unless it fails differently"
            )
    return None


def prune(app: App) -> int:
    """Drop failure rows older than `retention_days` (0 keeps them all); how many went."""
    days = app.config.monitor.retention_days
    if days <= 0:
        return 0
    gone = records.prune_failures(app.db, records.now(days * 86400))
    if gone:
        log.info("pruned %d failure row(s) older than %g days", gone, days)
    return gone


def _journal(app: App, event: FailureEvent, *, wait: bool = True) -> str:
    """The failed run's journal, read until two reads agree and systemd's own verdict is in it."""
    from pimainteno.systemd import journal_excerpt

    mon = app.config.monitor
    deadline, previous = time.monotonic() + (JOURNAL_WAIT if wait else 0), None
    while True:
        try:
            text = journal_excerpt(event.unit, invocation_id=event.invocation_id or None, lines=mon.journal_lines,
                                   max_bytes=JOURNAL_BYTES, user=mon.user)  # fmt: skip
        except PimaintenoError as e:
            return f"(no journal excerpt: {e})"
        if (text == previous and "Failed with result" in text) or time.monotonic() > deadline:
            return text
        previous = text
        time.sleep(0.1)


def _exit_status(text: str) -> int:
    """MONITOR_EXIT_STATUS: a number, or a signal name (TERM) when the process was killed."""
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals["SIG" + text.removeprefix("SIG")])
    except KeyError:
        return 0


def event_for(app: App, unit: str, env: dict[str, str] | None = None) -> FailureEvent | None:
    """The failure to record for ``unit``: systemd's ``MONITOR_*`` variables when an OnFailure=
    dependency started us, else the unit's current state; None when the unit has not failed."""
    env = dict(os.environ if env is None else env)
    wall, now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), time.monotonic()
    if env.get("MONITOR_UNIT") == unit and env.get("MONITOR_SERVICE_RESULT"):
        return FailureEvent(
            unit=unit, active_state="failed", sub_state="failed", result=env["MONITOR_SERVICE_RESULT"],
            exit_code=env.get("MONITOR_EXIT_CODE", ""), exit_status=_exit_status(env.get("MONITOR_EXIT_STATUS", "")),
            invocation_id=env.get("MONITOR_INVOCATION_ID", ""), detected_at=now, detected_wall=wall,
            failed_at=_failed_at(app, unit, env.get("MONITOR_INVOCATION_ID", "")),
        )  # fmt: skip
    from pimainteno.systemd import unit_state

    state = unit_state(unit, user=app.config.monitor.user)
    if state["ActiveState"] != "failed":
        return None
    return FailureEvent(
        unit=unit, active_state=state["ActiveState"], sub_state=state["SubState"], result=state["Result"],
        exit_code=state["ExecMainCode"], exit_status=state["ExecMainStatus"], invocation_id=state["InvocationID"],
        detected_at=now, detected_wall=wall, failed_at=state["FailedAt"],
    )  # fmt: skip


def _failed_at(app: App, unit: str, invocation: str) -> float:
    """When systemd saw ``unit``'s run ``invocation`` go down (epoch seconds), 0.0 when it cannot say:
    OnFailure= starts us a moment after, later on a loaded machine, and a run's restart owns a failure
    by its time. A unit started again since then is another run: its time is not this failure's."""
    from pimainteno.systemd import unit_state

    try:
        state = unit_state(unit, user=app.config.monitor.user)
    except (PimaintenoError, OSError):
        return 0.0
    return float(state["FailedAt"]) if invocation and state["InvocationID"] == invocation else 0.0


def record_probe_failure(app: App, project: Project, probe: Probe) -> Recorded | None:
    """A failed probe streak of ``project`` as a failure of its unit (result `probe`), while the unit is active.

    One per invocation of the unit: a heal that restarts it makes a new one; until then, a unit
    that keeps failing its probe is not healed again."""
    from pimainteno.systemd import unit_state

    state = unit_state(project.unit, user=app.config.monitor.user)
    if state["ActiveState"] != "active":
        log.info("%s: probe failed while %s is %s; not a probe failure", project.name, project.unit,
                 state["ActiveState"])  # fmt: skip
        return None
    event = FailureEvent(
        unit=project.unit, active_state=state["ActiveState"], sub_state=state["SubState"], result="probe",
        exit_code="", exit_status=0, invocation_id=state["InvocationID"], detected_at=time.monotonic(),
        detected_wall=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
    )  # fmt: skip
    return record_failure(app, event, source="probe", probe=probe)
