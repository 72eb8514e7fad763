"""What a run killed after its commit landed leaves behind: the restart it owed, its unfinished `restarts` rows.

A run that brought a commit in and was going to restart the unit leaves the status key
`restart-owed.<project>` (the commit) until its restart step is over. If its process died on the
way (SIGKILL at push, at restart, during settle), the next run of the project, holding the lock,
calls restart.finish_owed (this module sits below restart.py and pending.py: it restarts nothing), which:

- finishes the dead run's `restarts` rows without an outcome (`interrupted`, with the unit's state
  now) and withdraws its `restarting.<unit>` key, so failures of the unit are healed again;
- when the dead run's restart had begun: looks at the unit now and rolls the commit back if the
  unit is not active — exactly what the dead run would have done;
- when it had not (killed at push): restarts the unit now, with the usual rollback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pimainteno import records
from pimainteno.errors import PimaintenoError

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project

log = logging.getLogger("pimainteno")

OWED = "restart-owed."  # status key prefix: a commit whose restart step has not finished


def owe_restart(app: App, project: Project, sha: str, run_id: int) -> None:
    records.set_status(app.db, OWED + project.name, f"{sha} {run_id}")


def paid(app: App, project: Project) -> None:
    records.delete_status(app.db, OWED + project.name)


def owed(app: App, project: Project) -> tuple[str, int] | None:
    raw = records.status_value(app.db, OWED + project.name)
    try:
        sha, run_id = (raw or "").split()
        return sha, int(run_id)
    except ValueError:
        return None


def close_dead_restarts(app: App, project: Project) -> list[int]:
    """Give every `restarts` row of a dead run an outcome, withdraw dead runs' `restarting` keys; their run ids."""
    db = app.db
    dead: list[int] = []
    for row in records.unfinished_restarts(db, project.name):
        if row["run_id"] is not None and records.run_alive(db, row["run_id"]):
            continue
        state = state_now(app, row["unit"])
        records.finish_restart(db, row["id"], "interrupted", active_state=state.get("ActiveState"),
                               result=state.get("Result"),
                               detail=f"the run died during this restart; {row['unit']} was "
                                      f"{state.get('ActiveState', 'unknown')} when the next run looked")  # fmt: skip
        if row["run_id"] is not None:
            dead.append(row["run_id"])
    for unit, value in records.restarting_keys(db).items():
        run_id = value.get("run_id")
        if value.get("ended"):
            continue  # its run finished the restart check; the key only dates late-seen failures
        if unit == project.unit and not (isinstance(run_id, int) and records.run_alive(db, run_id)):
            records.withdraw_restart(db, unit)
    return dead


def state_now(app: App, unit: str) -> dict[str, str]:
    from pimainteno.systemd import unit_state

    try:
        return unit_state(unit, user=app.config.monitor.user)
    except PimaintenoError as e:
        log.warning("%s: cannot read its state: %s", unit, e)
        return {}
