"""`pimainteno restart PROJECT|UNIT`: restart a unit over D-Bus, wait, and say whether it is healthy.

Healthy means the restart job finished and the unit then stayed active for `settle` seconds (a
oneshot: ended successfully); see pimainteno.systemd.restart_and_wait. Every restart is a
`restarts` row (outcome healthy, unhealthy or error), whether a user or a run asked for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pimainteno import db as dbm
from pimainteno.app import App
from pimainteno.config import Project
from pimainteno.errors import ConfigError, InputError, PimaintenoError

log = logging.getLogger("pimainteno")


@dataclass(frozen=True)
class Restarted:
    restart_id: int
    unit: str
    project: str | None
    healthy: bool
    active_state: str
    result: str
    detail: str
    duration_s: float


def resolve(app: App, target: str) -> tuple[str, Project | None]:
    """A project name gives its unit; anything else is a unit name (`.service` added, as systemctl does)."""
    try:
        project = app.config.project(target)
        return project.unit, project
    except ConfigError:
        pass
    if not target or "/" in target:
        raise InputError(f"{target!r} is neither a configured project nor a unit name")
    unit = target if "." in target else f"{target}.service"
    return unit, app.config.project_for_unit(unit)


def restart(
    app: App,
    unit: str,
    project: Project | None = None,
    *,
    run_id: int | None = None,
    timeout: float | None = None,
    settle: float | None = None,
) -> Restarted:
    """Restart ``unit`` and record the outcome; a D-Bus problem is recorded too, then raised."""
    from pimainteno.systemd import restart_and_wait

    mon = app.config.monitor
    row_id = dbm.insert(app.db, "restarts", {
        "project": project.name if project else None, "unit": unit, "run_id": run_id, "requested_at": dbm.now(),
    })  # fmt: skip
    try:
        result = restart_and_wait(
            unit,
            user=mon.user,
            timeout=mon.restart_timeout if timeout is None else timeout,
            settle=mon.settle if settle is None else settle,
        )
    except PimaintenoError as e:
        dbm.update(app.db, "restarts", row_id, {"finished_at": dbm.now(), "outcome": "error", "detail": str(e)})
        raise
    outcome = "healthy" if result.healthy else "unhealthy"
    dbm.update(app.db, "restarts", row_id, {
        "finished_at": dbm.now(), "outcome": outcome, "active_state": result.active_state, "result": result.result,
        "detail": result.detail,
    })  # fmt: skip
    (log.info if result.healthy else log.warning)("%s: %s", unit, result.detail)
    return Restarted(row_id, unit, project.name if project else None, result.healthy, result.active_state, result.result,
                     result.detail, result.duration_s)  # fmt: skip
