"""`pimainteno run`: summarize → propose → validate → apply → commit → push → restart, one project at a time.

Safety: a patch reaches the project only after it applied and passed the project's tests in a
fresh worktree; the commit is made in that worktree and brought into the project with
`git merge --ff-only`, so the project is either as before or has the whole commit — never a
half-applied patch, even when the run is killed. After a push the project's unit is restarted and
the commit reverted when the unit turns unhealthy (pimainteno/commands/rollback.py).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from pimainteno import db as dbm
from pimainteno import git
from pimainteno.app import App
from pimainteno.commands.apply import set_proposal_status
from pimainteno.commands.propose import Proposal, load_proposal, propose
from pimainteno.config import Project
from pimainteno.errors import InputError, PatchRejected, PimaintenoError, ValidationFailed
from pimainteno.procs import run_command, tail

log = logging.getLogger("pimainteno")
MODES = ("propose", "apply", "commit", "push")


@dataclass
class RunOutcome:
    project: str
    status: str  # ok, nothing, failed, rejected, rolled_back, skipped, already-running
    run_id: int | None = None
    error: str | None = None
    proposal_id: int | None = None
    commit_sha: str | None = None


@dataclass
class Recorder:
    """The `runs` row of one run, updated after every step so the dashboard shows progress."""

    app: App
    run_id: int
    steps: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = {"step": name, "outcome": "ok"}
        start = time.monotonic()
        dbm.update(self.app.db, "runs", self.run_id, {"step": name})
        try:
            yield entry
        except BaseException as e:
            entry["outcome"] = "failed"
            entry["detail"] = str(e) or type(e).__name__
            raise
        finally:
            entry["seconds"] = round(time.monotonic() - start, 3)
            self.steps.append(entry)
            dbm.update(self.app.db, "runs", self.run_id, {"steps": self.steps})


@contextmanager
def project_lock(app: App, project: Project) -> Iterator[bool]:
    """One run per project at a time; the kernel drops the lock when a killed process dies."""
    path = app.state_subdir("locks") / f"{project.name}.lock"
    f: IO[str] = open(path, "a")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        f.close()


def recover(app: App, project: Project) -> None:
    """Clean up what a killed run left: its `running` row, a half-finished `apply`, worktrees."""
    rows = app.db.execute("SELECT id, pid FROM runs WHERE project = ? AND status = 'running'", [project.name])
    for run_id, pid in rows.fetchall():
        if pid != os.getpid():
            log.warning("%s: run #%d was interrupted (its process is gone)", project.name, run_id)
            dbm.update(app.db, "runs", run_id, {"status": "interrupted", "finished_at": dbm.now()})
    unpushed = app.db.execute(
        "SELECT id, sha, proposal_id FROM commits WHERE project = ? AND pushed_at IS NULL", [project.name]
    ).fetchall()
    for commit_id, sha, proposal_id in unpushed:
        if not git.is_ancestor(project.path, sha):  # an interrupted run recorded it but never brought it in
            app.db.execute("DELETE FROM commits WHERE id = ?", [commit_id])
            app.db.execute("UPDATE commits SET reverted_by = NULL WHERE project = ? AND reverted_by = ?",
                           [project.name, sha])  # fmt: skip
            if proposal_id is not None:
                set_proposal_status(app, proposal_id, "failed", "the run was interrupted before the commit landed")
    git.prune_stale_worktrees(project.path, app.state_dir)


def run_project(
    app: App,
    project: Project,
    *,
    trigger: str = "cli",
    failure_id: int | None = None,
    reason: str | None = None,
    proposal_id: int | None = None,
    mode: str | None = None,
) -> RunOutcome:
    """Run the chain for one project; every outcome is recorded, expected errors become `failed`."""
    with project_lock(app, project) as locked:
        if not locked:
            log.info("%s: already running; not starting a second run", project.name)
            return RunOutcome(project.name, "already-running")
        recover(app, project)
        run_id = dbm.insert(app.db, "runs", {
            "project": project.name, "trigger": trigger, "failure_id": failure_id, "started_at": dbm.now(),
            "status": "running", "pid": os.getpid(), "steps": [],
        })  # fmt: skip
        if failure_id is not None:  # the heal run of this failure
            app.db.execute("UPDATE failures SET run_id = ? WHERE id = ?", [run_id, failure_id])
        rec = Recorder(app, run_id)
        start = time.monotonic()
        outcome = RunOutcome(project.name, "failed", run_id)
        try:
            outcome = _chain(app, project, rec, mode or project.mode, failure_id, reason, proposal_id)
        except ValidationFailed as e:
            outcome.status, outcome.error = "rejected", str(e)
        except PimaintenoError as e:
            outcome.error = str(e)
        except KeyboardInterrupt:
            outcome.status, outcome.error = "interrupted", "interrupted"
            raise
        finally:
            if outcome.error:
                log.error("%s: %s", project.name, outcome.error)
            dbm.update(app.db, "runs", run_id, {
                "status": outcome.status, "finished_at": dbm.now(), "duration_s": round(time.monotonic() - start, 3),
                "error": outcome.error, "proposal_id": outcome.proposal_id, "commit_sha": outcome.commit_sha,
            })  # fmt: skip
        return outcome


def _chain(app: App, project: Project, rec: Recorder, mode: str, failure_id: int | None, reason: str | None,
           proposal_id: int | None) -> RunOutcome:  # fmt: skip
    out = RunOutcome(project.name, "nothing", rec.run_id)
    stop = MODES.index(mode)
    if project.branch and git.current_branch(project.path) != project.branch:
        raise InputError(f"{project.name} is not on its configured branch {project.branch!r}; not touching it")
    from pimainteno.commands.push import push, unpushed

    if stop >= MODES.index("push") and unpushed(app, project):
        with rec.step("push-pending"):  # a push that failed last time
            push(app, project, run_id=rec.run_id)
    feedback = None
    proposal: Proposal | None = None
    for attempt in range(project.retries + 1):
        if proposal_id is not None:
            proposal, status = load_proposal(app, proposal_id)
            if proposal.project != project.name or status not in ("proposed", "approved"):
                raise InputError(f"proposal #{proposal_id} is {status} for {proposal.project}; cannot apply it")
        else:
            with rec.step("summarize"):
                from pimainteno.commands.summarize import summarize

                head = git.head(project.path)
                summarize(app, project, run_id=rec.run_id, head=head)
            with rec.step("propose") as entry:
                proposal = propose(app, project, reason=reason, failure_id=failure_id, feedback=feedback,
                                   run_id=rec.run_id, head=head)  # fmt: skip
                entry["detail"] = f"proposal #{proposal.id}" if proposal else "nothing to propose"
        if proposal is None:
            return out
        out.proposal_id = proposal.id
        if stop == MODES.index("propose"):
            out.status = "ok"
            return out
        with rec.step("validate") as entry:
            try:
                sha = validate_and_commit(app, project, proposal, rec.run_id, commit=stop >= MODES.index("commit"))
                break
            except ValidationFailed as e:
                entry["outcome"], entry["detail"] = "rejected", str(e)
                feedback = getattr(e, "output", None) or str(e)
                if proposal_id is not None or attempt == project.retries:
                    raise
                log.info("%s: retrying with the test output (%d of %d)", project.name, attempt + 1, project.retries)
    assert proposal is not None  # the loop either broke out with a validated proposal or returned/raised
    if stop == MODES.index("apply"):
        with rec.step("apply"):
            from pimainteno.commands.apply import apply

            apply(app, None, proposal_id=proposal.id)
        out.status = "ok"
        return out
    with rec.step("merge") as entry:
        bring_in(app, project, proposal, sha, rec.run_id)
        entry["detail"] = sha
    out.commit_sha = sha
    out.status = "ok"
    if stop >= MODES.index("push"):
        with rec.step("push"):
            push(app, project, run_id=rec.run_id)
        from pimainteno.commands.rollback import restart_after_push

        restart_after_push(app, project, rec, out)  # may end the run `rolled_back`
    return out


def validate_and_commit(app: App, project: Project, proposal: Proposal, run_id: int, *, commit: bool) -> str:
    """Apply in a fresh worktree at HEAD, run the tests; commit there when asked. Returns the sha."""
    from pimainteno.commands.commit import commit_args, commit_message, full_message, identity
    from pimainteno.patch import check_patch

    head = git.head(project.path)
    if head != proposal.base_head:
        log.info("%s: HEAD moved since proposal #%d; checking it still applies", project.name, proposal.id)
    with git.temporary_worktree(project.path, app.state_dir, f"{project.name}-validate") as wt:
        try:
            text = check_patch(proposal.diff, project.path, project.policy, project=project.name).text
            try:
                git.git(wt, "apply", "--index", "--whitespace=nowarn", "-", input=text)
            except git.GitError as e:
                raise PatchRejected(f"patch rejected: it does not apply to {project.name} at HEAD: {e}") from None
        except PatchRejected as e:
            set_proposal_status(app, proposal.id, "rejected", str(e))
            raise
        if project.test:
            shown = project.test if isinstance(project.test, str) else " ".join(project.test)
            log.info("%s: proving proposal #%d with `%s`", project.name, proposal.id, shown)
            result = run_command(project.test, wt, project.test_timeout)
            if not result.ok:
                why = "timed out" if result.timed_out else result.error or f"failed (exit status {result.exit_status})"
                output = tail(result.output, 16_000)
                set_proposal_status(app, proposal.id, "rejected", f"tests {why}", test_output=output)
                err = ValidationFailed(f"proposal #{proposal.id} rejected: the tests {why}; not applied")
                err.output = output  # type: ignore[attr-defined]
                raise err
            git.reset_worktree(wt)  # drop what the tests wrote
            git.git(wt, "apply", "--index", "--whitespace=nowarn", "-", input=text)
        else:
            log.warning("%s: no test command configured; the patch is checked but not proven", project.name)
        set_proposal_status(app, proposal.id, "validated" if project.test else "checked")
        if not commit:
            return head
        subject = commit_message(app, project, wt, proposal.diff, proposal.files, run_id)
        git.git(wt, *identity(app), *commit_args(app), input=full_message(subject, proposal.id))
        return git.head(wt)


def bring_in(app: App, project: Project, proposal: Proposal, sha: str, run_id: int) -> None:
    """Fast-forward the project to the validated commit; git refuses rather than overwrite local work.

    The commit is recorded first, so a run killed right after the merge still pushes it next time;
    `recover` forgets the record if the merge never happened.
    """
    from pimainteno.commands.commit import record

    message = git.git(project.path, "log", "-1", "--format=%B", sha).strip()
    record(app, project, sha, message, proposal.id, run_id)
    try:
        git.git(project.path, "merge", "--ff-only", "--quiet", sha)
    except git.GitError as e:
        app.db.execute("DELETE FROM commits WHERE sha = ? AND project = ?", [sha, project.name])
        set_proposal_status(app, proposal.id, "failed", f"could not bring the commit in: {e}")
        raise InputError(
            f"{project.name}: could not fast-forward to the validated commit ({e}); "
            "local changes or new commits are in the way, nothing was changed"
        ) from None


def run_many(app: App, names: list[str], *, keep_going: bool, on_outcome: Any, **kw: Any) -> list[RunOutcome]:
    """Run each project in turn; with keep_going one project's error does not stop the others."""
    outcomes = []
    for name in names:
        try:
            outcome = run_project(app, app.project(name), **kw)
        except PimaintenoError as e:
            if not keep_going:
                raise
            outcome = RunOutcome(name, "failed", error=str(e))
        outcomes.append(outcome)
        on_outcome(outcome)
    return outcomes


def exit_code(outcomes: list[RunOutcome]) -> int:
    from pimainteno import errors

    statuses = {o.status for o in outcomes}
    if "failed" in statuses:
        return errors.TOOL_FAILED
    if statuses & {"rejected", "rolled_back"}:
        return errors.VALIDATION_FAILED
    return errors.OK


def summary_line(o: RunOutcome) -> str:
    bits = [f"{o.project}: {o.status}"]
    if o.run_id:
        bits.append(f"run #{o.run_id}")
    if o.proposal_id:
        bits.append(f"proposal #{o.proposal_id}")
    if o.commit_sha:
        bits.append(f"commit {o.commit_sha[:12]}")
    if o.error:
        bits.append(o.error)
    return " — ".join(bits)


def as_json(o: RunOutcome) -> str:
    return json.dumps(o.__dict__)
