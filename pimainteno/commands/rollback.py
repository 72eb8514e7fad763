"""The end of `run`: restart the project's unit after a push and roll the commit back if it is unhealthy.

Rolling back is a `git revert` of pimainteno's commit, made like its other commits (its identity,
no hooks) in a temporary worktree and fast-forwarded into the project, then pushed the same way
(never forced); the unit is restarted again. The run ends `rolled_back`.

A restart is skipped, with a warning, when there is nothing to restart: `restart = false`, no
systemd to talk to (a container, the offline demo), or a unit systemd does not know. Skipping
never fails a run nor rolls anything back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pimainteno import db as dbm
from pimainteno import git
from pimainteno.app import App
from pimainteno.commands.apply import set_proposal_status
from pimainteno.config import Project
from pimainteno.errors import PimaintenoError, ToolError

if TYPE_CHECKING:
    from pimainteno.commands.restart import Restarted
    from pimainteno.commands.run import Recorder, RunOutcome

log = logging.getLogger("pimainteno")


def why_not_restart(app: App, project: Project) -> str | None:
    """Why the project's unit cannot be restarted here, or None when it can."""
    if not project.restart:
        return "restart = false in the configuration"
    from pimainteno.systemd import unit_state

    try:
        state = unit_state(project.unit, user=app.config.monitor.user)
    except PimaintenoError as e:
        return f"no systemd to restart {project.unit} with ({e})"
    if state["LoadState"] == "not-found":
        return f"systemd has no unit {project.unit}"
    return None


@contextlib.contextmanager
def _announced(app: App, unit: str, run_id: int) -> Iterator[None]:
    """Tell `watch` and `heal` that a failure of ``unit`` now is this run's to handle (no second heal)."""
    mon = app.config.monitor
    until = time.time() + mon.restart_timeout + mon.settle + 30
    key = f"restarting.{unit}"
    dbm.set_status(app.db, key, json.dumps({"run_id": run_id, "until": until}))
    try:
        yield
    finally:
        app.db.execute("DELETE FROM status WHERE key = ?", [key])


def _restart(app: App, project: Project, run_id: int) -> Restarted:
    from pimainteno.commands.restart import restart

    with _announced(app, project.unit, run_id):
        return restart(app, project.unit, project, run_id=run_id)


def restart_after_push(app: App, project: Project, rec: Recorder, out: RunOutcome) -> None:
    """Restart the unit; when it is unhealthy, revert and push the commit, restart again, `rolled_back`."""
    assert out.commit_sha is not None
    with rec.step("restart") as entry:
        why = why_not_restart(app, project)
        if why:
            if project.restart:
                log.warning("%s: not restarting: %s", project.name, why)
            entry["outcome"], entry["detail"] = "skipped", why
            return
        first = _restart(app, project, rec.run_id)
        entry["detail"] = first.detail
        if first.healthy:
            return
        entry["outcome"] = "unhealthy"
    with rec.step("rollback") as entry:
        revert_sha = revert(app, project, out.commit_sha, rec.run_id, f"{project.unit} was unhealthy: {first.detail}")
        entry["detail"] = f"reverted {out.commit_sha[:12]} with {revert_sha[:12]}"
    from pimainteno.commands.push import push

    with rec.step("push-revert"):
        push(app, project, run_id=rec.run_id)
    with rec.step("restart-after-rollback") as entry:
        second = _restart(app, project, rec.run_id)
        entry["detail"] = second.detail
        if not second.healthy:
            entry["outcome"] = "unhealthy"
    out.status = "rolled_back"
    out.error = f"{project.unit} was unhealthy after the restart ({first.detail}); reverted {out.commit_sha[:12]}" + (
        "" if second.healthy else f", and it is still unhealthy ({second.detail})"
    )


def revert(app: App, project: Project, sha: str, run_id: int, why: str) -> str:
    """Revert ``sha`` in a worktree, record it (kind `revert`, `reverted_by` on the original), bring it in."""
    from pimainteno.commands.commit import commit_args, identity, record

    subject = git.git(project.path, "log", "-1", "--format=%s", sha).strip()
    message = f'Revert "{subject}"\n\nThis reverts commit {sha}.\n{why}\n'
    with git.temporary_worktree(project.path, app.state_dir, f"{project.name}-revert") as wt:
        try:
            git.git(wt, "revert", "--no-commit", sha)
        except git.GitError as e:
            raise ToolError(f"{project.name}: cannot revert {sha[:12]} ({e}); the unit stays unhealthy") from None
        git.git(wt, *identity(app), *commit_args(app), input=message)
        revert_sha = git.head(wt)
    record(app, project, revert_sha, message.strip(), None, run_id, kind="revert")
    app.db.execute("UPDATE commits SET reverted_by = ? WHERE project = ? AND sha = ?", [revert_sha, project.name, sha])
    try:
        git.git(project.path, "merge", "--ff-only", "--quiet", revert_sha)
    except git.GitError as e:
        app.db.execute("DELETE FROM commits WHERE sha = ? AND project = ?", [revert_sha, project.name])
        app.db.execute("UPDATE commits SET reverted_by = NULL WHERE project = ? AND sha = ?", [project.name, sha])
        raise ToolError(
            f"{project.name}: could not bring the revert of {sha[:12]} in ({e}); nothing was changed"
        ) from None
    row = app.db.execute(
        "SELECT proposal_id FROM commits WHERE project = ? AND sha = ?", [project.name, sha]
    ).fetchone()
    if row and row[0] is not None:
        set_proposal_status(app, row[0], "rolled_back", why)
    log.warning("%s: reverted %s with %s: %s", project.name, sha[:12], revert_sha[:12], why)
    return revert_sha
