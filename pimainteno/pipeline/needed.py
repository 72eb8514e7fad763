"""Whether a heal is still needed: a heal that starts (or gets to its commit) after the unit was healed
must not ask the model again, push a second commit and restart a healthy unit.

A unit needs no heal when it is active, its health probe (if configured) passes, and no failure of
it was recorded after the last restart pimainteno found healthy. Failures that arrived while an
earlier heal of the unit ran are older than that heal's healthy restart: they were that heal's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pimainteno import records
from pimainteno.errors import PimaintenoError

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project


def already_healthy(app: App, project: Project) -> str | None:
    """Why the project's unit needs no heal now (one line), or None when it does (or cannot be told)."""
    from pimainteno.systemd import unit_state

    unit = project.unit
    restarted = records.last_healthy_restart(app.db, unit)
    if restarted is None:
        return None
    latest = records.latest_failure_at(app.db, unit)
    if latest is not None and latest > restarted:
        return None
    try:
        state = unit_state(unit, user=app.config.monitor.user)
    except PimaintenoError:
        return None
    if state["ActiveState"] != "active":
        return None
    if project.health:
        from pimainteno import health

        result = health.probe(project.health, project.health_timeout, cwd=project.path)
        if not result.ok:
            return None
    return f"{unit} is active and no failure came after its healthy restart at {restarted}"
