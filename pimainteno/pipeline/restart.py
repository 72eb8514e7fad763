"""The end of a run: restart the project's unit after a push and roll the commit back if it is unhealthy.

Rolling back is a `git revert` of pimainteno's commit, made like its other commits (its identity,
no hooks) in a temporary worktree and fast-forwarded into the project, then pushed the same way
(never forced); the unit is restarted again — whether or not the revert could be pushed (a push
that failed stays recorded on the commit and is retried by the next run's `push-pending`): git
never keeps a service down. The run ends `rolled_back`.

A restart that systemd refuses by its start limit (even after pimainteno reset it) is recorded as
`start-limited` with systemd's reason: the unit never ran the change, so it is not a reason to
revert it.

With a `health` probe the unit must also pass it `health_passes` times in a row within `settle`
(pimainteno.health): a service that starts but answers 500, or never opens its port, is unhealthy
and rolled back like one that crashed.

A restart is skipped, with a warning, when there is nothing to restart: `restart = false`, no
systemd to talk to (a container, the offline demo), or a unit systemd does not know. Skipping
never fails a run nor rolls anything back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pimainteno import git, records
from pimainteno.errors import PimaintenoError, ToolError
from pimainteno.health import Probe
from pimainteno.records import ProposalStatus

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project
    from pimainteno.pipeline.recorder import Recorder
    from pimainteno.pipeline.request import RunOutcome

log = logging.getLogger("pimainteno")
PROBE_EVERY = 0.5  # seconds between probes while a restarted unit settles


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
    start_limited: bool = False  # systemd refused to start it (its start limit): says nothing about a change
    verdict_at: float = 0.0  # epoch seconds of the last look at the unit (state, probe) the verdict rests on

    @property
    def outcome(self) -> str:
        """The `restarts` row's outcome: healthy, unhealthy or start-limited."""
        return "healthy" if self.healthy else "start-limited" if self.start_limited else "unhealthy"


def restart(app: App, unit: str, project: Project | None = None, *, run_id: int | None = None,
            timeout: float | None = None, settle: float | None = None) -> Restarted:  # fmt: skip
    """Restart ``unit`` and record the outcome (a `restarts` row); a D-Bus problem is recorded too, then raised."""
    from pimainteno.systemd import restart_and_wait

    mon = app.config.monitor
    row_id = records.add_restart(app.db, project=project.name if project else None, unit=unit, run_id=run_id)
    try:
        result = restart_and_wait(
            unit,
            user=mon.user,
            timeout=mon.restart_timeout if timeout is None else timeout,
            settle=mon.settle if settle is None else settle,
        )
    except PimaintenoError as e:
        records.finish_restart(app.db, row_id, "error", detail=str(e))
        raise
    healthy, detail, duration = result.healthy, result.detail, result.duration_s
    if healthy and project is not None and project.health:
        checked = probe_after_restart(app, unit, project, mon.settle if settle is None else settle)
        healthy, duration = checked.ok, duration + checked.seconds
        detail = records.scrub(f"{detail}; {checked.detail}")  # a probe URL may carry a token
    outcome = "healthy" if healthy else "start-limited" if result.start_limited else "unhealthy"
    verdict_at = time.time()
    records.finish_restart(app.db, row_id, outcome, active_state=result.active_state, result=result.result,
                           detail=detail)  # fmt: skip
    (log.info if healthy else log.warning)("%s: %s", unit, detail)
    return Restarted(row_id, unit, project.name if project else None, healthy, result.active_state, result.result,
                     detail, round(duration, 3), result.start_limited, verdict_at)  # fmt: skip


def probe_after_restart(app: App, unit: str, project: Project, settle: float) -> Probe:
    """The project's probe must pass `health_passes` times in a row within ``settle`` s (at least one
    probe's time), and the unit must still be active afterwards."""
    from pimainteno.health import wait_healthy
    from pimainteno.systemd import unit_state

    assert project.health is not None
    start = time.monotonic()
    within = max(settle, project.health_timeout)
    checked = wait_healthy(project.health, passes=project.health_passes, within=within,
                           timeout=project.health_timeout, cwd=project.path,
                           interval=min(PROBE_EVERY, project.health_interval))  # fmt: skip
    seconds = round(time.monotonic() - start, 3)
    if not checked.ok:
        return Probe(False, f"health probe failed: {checked.detail}", checked.output, seconds)
    try:
        state = unit_state(unit, user=app.config.monitor.user)["ActiveState"]
    except PimaintenoError as e:
        return Probe(False, f"health probe passed, but the unit's state cannot be read: {e}", "", seconds)
    if state != "active":
        return Probe(False, f"health probe passed, but {unit} is {state} now", "", seconds)
    return Probe(True, f"health probe passed: {checked.detail}", checked.output, seconds)


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


def _restart(app: App, project: Project, run_id: int) -> Restarted:
    """Restart the project's unit, telling `watch` and `heal` that a failure of it meanwhile is this run's
    to handle (no second heal): from the announcement to the verdict, judged by systemd's time of the failure."""
    mon = app.config.monitor
    probing = max(mon.settle, project.health_timeout) if project.health else 0.0
    records.announce_restart(
        app.db, project.unit, run_id, time.time() + mon.restart_timeout + mon.settle + probing + 30
    )
    try:
        done = restart(app, project.unit, project, run_id=run_id)
    except BaseException:  # no verdict (a D-Bus error, SIGTERM): a failure now is nobody's yet, so it is healed
        records.withdraw_restart(app.db, project.unit)
        raise
    records.end_restart(app.db, project.unit, at=done.verdict_at)
    return done


def restart_after_push(app: App, project: Project, rec: Recorder, out: RunOutcome) -> RunOutcome:
    """Restart the unit; when it is unhealthy, revert and push the commit, restart again: `rolled_back`."""
    assert out.commit_sha is not None
    with rec.step("restart") as entry:
        why = why_not_restart(app, project)
        if why:
            if project.restart:
                log.warning("%s: not restarting: %s", project.name, why)
            entry["outcome"], entry["detail"] = "skipped", why
            return out
        first = _restart(app, project, rec.run_id)
        entry["detail"] = first.detail
        if first.healthy:
            return out
        entry["outcome"] = first.outcome
        if first.start_limited:  # systemd never ran the change: no verdict on it, nothing to revert
            log.warning("%s: %s; not reverting %s for it", project.name, first.detail, out.commit_sha[:12])
            return out.but(error=f"{first.detail}; the change was kept (it never ran)")
    return roll_back(app, project, rec, out, out.commit_sha, first.detail)


def roll_back(app: App, project: Project, rec: Recorder, out: RunOutcome, sha: str, why: str) -> RunOutcome:
    """Revert ``sha``, push the revert if the remote takes it, and restart the unit on the reverted checkout
    whatever the push did: `rolled_back`."""
    from pimainteno import errors
    from pimainteno.pipeline.land import push
    from pimainteno.pipeline.pending import diverged

    with rec.step("rollback") as entry:
        revert_sha = revert(app, project, sha, rec.run_id, f"{project.unit} was unhealthy: {why}")
        entry["detail"] = f"reverted {sha[:12]} with {revert_sha[:12]}"
    push_error = None
    with rec.step("push-revert") as entry:
        if diverged(app, project):
            entry["outcome"], entry["detail"] = "skipped", "the project is diverged from its remote; not pushing"
        else:
            try:
                push(app, project, run_id=rec.run_id)
            except PimaintenoError as e:  # recorded on the commit; the next run's push-pending retries it
                push_error = str(e)
                entry["outcome"], entry["detail"] = "failed", push_error
    with rec.step("restart-after-rollback") as entry:  # the reverted checkout runs, pushed or not
        second = _restart(app, project, rec.run_id)
        entry["detail"] = second.detail
        if not second.healthy:
            entry["outcome"] = second.outcome
    error = (
        f"{project.unit} was unhealthy after the restart ({why}); reverted {sha[:12]}"
        + ("" if second.healthy else f", and it is still unhealthy ({second.detail})")
        + (f"; the revert is not pushed yet ({push_error})" if push_error else "")
    )
    return out.but(status="rolled_back", error=error, exit_code=errors.VALIDATION_FAILED)


def revert(app: App, project: Project, sha: str, run_id: int, why: str) -> str:
    """Revert ``sha`` in a worktree, record it (kind `revert`, `reverted_by` on the original), bring it in."""
    from pimainteno.errors import InputError
    from pimainteno.pipeline.land import bring_in

    subject = git.git(project.path, "log", "-1", "--format=%s", sha).strip()
    message = f'Revert "{subject}"\n\nThis reverts commit {sha}.\n{records.scrub(why)}\n'
    with git.temporary_worktree(project.path, app.state_dir, f"{project.name}-revert") as wt:
        try:
            revert_sha = git.revert_commit(wt, sha, message, app.config.git.author_or_default)
        except git.GitError as e:
            raise ToolError(f"{project.name}: cannot revert {sha[:12]} ({e}); the unit stays unhealthy") from None
    records.mark_reverted(app.db, project.name, sha, revert_sha)
    try:
        bring_in(app, project, None, revert_sha, run_id, kind="revert")
    except InputError as e:
        raise ToolError(f"{project.name}: could not bring the revert of {sha[:12]} in: {e}") from None
    row = records.commit_row(app.db, project.name, sha)
    if row and row["proposal_id"] is not None:
        records.transition(app.db, row["proposal_id"], ProposalStatus.ROLLED_BACK, actor="pimainteno", reason=why)
    log.warning("%s: reverted %s with %s: %s", project.name, sha[:12], revert_sha[:12], why)
    return revert_sha


def finish_owed(app: App, project: Project, rec: Recorder, out: RunOutcome) -> RunOutcome | None:
    """Finish a dead run's restart of its commit; the rolled-back outcome when it had to roll back, else None."""
    from pimainteno.pipeline.leftover import close_dead_restarts, owed, paid, state_now

    dead = close_dead_restarts(app, project)
    debt = owed(app, project)
    if debt is None:
        return None
    sha, run_id = debt
    if records.run_alive(app.db, run_id):
        return None
    row = records.commit_row(app.db, project.name, sha)
    if row is None or row["reverted_by"] or not git.is_ancestor(project.path, sha):
        paid(app, project)  # never landed, or already undone: nothing is owed
        return None
    with rec.step("finish-dead-run") as entry:
        entry["detail"] = f"run #{run_id} died before it finished restarting {project.unit} on {sha[:12]}"
    if why_not_restart(app, project):
        paid(app, project)
        return None
    if run_id in dead:  # its restart had begun: judge the unit as it is now
        state = state_now(app, project.unit)
        if state.get("ActiveState") == "active":
            paid(app, project)
            return None
        why = f"{project.unit} was {state.get('ActiveState', 'unknown')} after run #{run_id}'s restart"
        result = roll_back(app, project, rec, out.but(commit_sha=sha), sha, why)
    else:
        result = restart_after_push(app, project, rec, out.but(commit_sha=sha))
    paid(app, project)
    return result if result.status == "rolled_back" else None
