"""`pimainteno restart PROJECT|UNIT`: restart a unit over D-Bus, wait, and say whether it is healthy.

Healthy means the restart job finished and the unit then stayed active for `settle` seconds (a
oneshot: ended successfully; see pimainteno.systemd.restart_and_wait) and, when the project has a
`health` probe, the probe passed `health_passes` times in a row within `settle` (pimainteno.health). Every restart is a
`restarts` row (outcome healthy, unhealthy or error), whether a user or a run asked for it.
"""

from __future__ import annotations

from pimainteno import pipeline
from pimainteno.app import App
from pimainteno.config import Project
from pimainteno.errors import ConfigError, InputError
from pimainteno.pipeline import Restarted


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


def restart(app: App, unit: str, project: Project | None = None, *, timeout: float | None = None,
            settle: float | None = None) -> Restarted:  # fmt: skip
    return pipeline.restart(app, unit, project, timeout=timeout, settle=settle)
