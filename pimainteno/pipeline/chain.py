"""The run chain: summarize → propose → validate → commit → merge → push → restart (→ rollback).

Safety: a patch reaches the project only after it applied and passed the project's tests in a
fresh worktree; the commit is made in a worktree at the proven HEAD and brought into the project
with `git merge --ff-only`, so the project is either as before or has the whole commit — never a
half-applied patch, even when the run is killed. After a push the project's unit is restarted and
the commit reverted when the unit turns unhealthy (pipeline/restart.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pimainteno import errors, git, notify, records
from pimainteno.errors import InputError, PatchRejected, PimaintenoError
from pimainteno.pipeline.recorder import Recorder, project_lock, recover
from pimainteno.pipeline.request import MODES, Request, RunOutcome
from pimainteno.records import ProposalStatus

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project

log = logging.getLogger("pimainteno")


def run(app: App, request: Request, project: Project | None = None) -> RunOutcome:
    """Run the chain for one request; every outcome is recorded, expected errors end the run `failed`/`rejected`."""
    project = project or app.project(request.project)
    with project_lock(app, project) as locked:
        if not locked:
            log.info("%s: already running; not starting a second run", project.name)
            return RunOutcome(project.name, "already-running")
        recover(app, project)
        run_id = records.start_run(app.db, project.name, request.source, request.failure_id)
        rec = Recorder(app, run_id)
        start = time.monotonic()
        outcome = RunOutcome(project.name, "failed", run_id, exit_code=errors.TOOL_FAILED)

        def ended(status: str, error: str, code: int) -> RunOutcome:
            return RunOutcome(project.name, status, run_id, error, rec.proposal_id, exit_code=code)

        try:
            outcome = _chain(app, project, rec, request)
        except errors.ValidationFailed as e:
            outcome = ended("rejected", str(e), errors.VALIDATION_FAILED)
        except PatchRejected as e:  # the policy refused the patch: bad input, not a tool failure
            outcome = ended("rejected", str(e), errors.BAD_INPUT)
        except PimaintenoError as e:
            outcome = ended("failed", str(e), errors.TOOL_FAILED)
        except KeyboardInterrupt:
            outcome = ended("interrupted", "interrupted", errors.INTERRUPTED)
            raise
        finally:
            if outcome.error:  # the project's name said once; "nothing" with a reason (already healthy) is news
                said = outcome.error.removeprefix(f"{project.name}: ")
                (log.info if outcome.status == "nothing" else log.error)("%s: %s", project.name, said)
            records.finish_run(app.db, run_id, outcome.status, duration_s=round(time.monotonic() - start, 3),
                               error=outcome.error, proposal_id=outcome.proposal_id,
                               commit_sha=outcome.commit_sha)  # fmt: skip
            if request.failure_id is not None:  # the failure no longer says "heal: queued" once its heal ended
                records.end_heal(app.db, request.failure_id, run_id, outcome.status, outcome.commit_sha is not None)
        notify.about_run(app, outcome)  # bounded and never raises
        return outcome


def _chain(app: App, project: Project, rec: Recorder, request: Request) -> RunOutcome:
    from pimainteno.pipeline.land import bring_in
    from pimainteno.pipeline.leftover import owe_restart, paid
    from pimainteno.pipeline.needed import already_healthy
    from pimainteno.pipeline.pending import diverged, push_or_hold, push_pending
    from pimainteno.pipeline.propose import propose, summarize
    from pimainteno.pipeline.restart import finish_owed, restart_after_push
    from pimainteno.pipeline.validate import TestsFailed, commit_validated, validate

    out = RunOutcome(project.name, "nothing", rec.run_id)
    mode = request.mode or project.mode
    if request.proposal_id is not None:
        mode = "push"  # an approval is the person's go-ahead for the whole chain, whatever the project's mode
    stop = MODES.index(mode)
    first_head, branch = git.head_and_branch(project.path)  # one git call; HEAD is reused below if nothing ran
    if project.branch and branch != project.branch:
        raise InputError(f"{project.name} is not on its configured branch {project.branch!r}; not touching it")
    if stop >= MODES.index("push") and (records.unpushed(app.db, project.name) or diverged(app, project)):
        with rec.step("push-pending") as entry:  # a push that failed, or landed unseen, last time
            entry["outcome"], entry["detail"] = push_pending(app, project, run_id=rec.run_id)
    if stop >= MODES.index("push"):
        finished = finish_owed(app, project, rec, out)  # a dead run's restart, and its rollback
        if finished is not None:
            return finished
    if request.failure_id is not None:
        with rec.step("still-needed") as entry:
            healthy = already_healthy(app, project)
            entry["detail"] = healthy or "yes"
        if healthy:
            return out.but(error=f"already healthy: {healthy}")
    feedback = None
    failed: TestsFailed | None = None
    proposal: records.Proposal | None
    for attempt in range(project.retries + 1):
        if request.proposal_id is not None:
            proposal = _approved(app, project, request)
        else:
            # no step before this one (a push, a dead run's restart or rollback): HEAD is as first read
            head = first_head if attempt == 0 and first_head and not rec.steps else git.head(project.path)
            if request.failure_id is None:  # a heal works from the failure and the last summary: one model call
                with rec.step("summarize"):
                    summarize(app, project, run_id=rec.run_id, head=head)
            with rec.step("propose") as entry:
                proposal = propose(app, project, reason=request.reason, failure_id=request.failure_id,
                                   feedback=feedback, run_id=rec.run_id, head=head)  # fmt: skip
                entry["detail"] = f"proposal #{proposal.id}" if proposal else "nothing to propose"
        if proposal is None:
            return out
        out = out.but(proposal_id=proposal.id)
        rec.proposal_id = proposal.id
        if request.proposal_id is None and not request.retry_known:
            known = _known_failure(app, project, rec, proposal)
            if known and failed is not None:
                raise failed  # the retry came back with the change that just failed the tests
            if known:
                return out.but(error=known)
        if stop == MODES.index("propose"):
            return out.but(status="ok")
        if not project.test and project.unproven == "propose" and request.proposal_id is None:
            with rec.step("validate") as entry:
                why = (f"no test command: proposal #{proposal.id} waits for a person to approve it "
                       '(set `test`, or unproven = "push" to land unproven changes)')  # fmt: skip
                entry["outcome"], entry["detail"] = "skipped", why
                log.warning("%s: %s", project.name, why)
            return out.but(status="ok")
        with rec.step("validate") as entry:
            try:
                validated = validate(app, project, proposal, actor=_actor(request))
                break
            except TestsFailed as e:
                entry["outcome"], entry["detail"] = "rejected", str(e)
                feedback, failed = e.output or str(e), e
                if request.proposal_id is not None or attempt == project.retries:
                    raise
                log.info("%s: retrying with the test output (%d of %d)", project.name, attempt + 1, project.retries)
    assert proposal is not None  # the loop broke out with a validated proposal, or returned or raised
    if stop == MODES.index("apply"):
        with rec.step("apply"):
            from pimainteno.pipeline.land import apply_patch

            apply_patch(app, None, proposal_id=proposal.id, actor="pimainteno")
        return out.but(status="ok")
    if request.failure_id is not None and stop >= MODES.index("push"):
        with rec.step("still-needed") as entry:  # again before a commit and restart: healed meanwhile?
            healthy = already_healthy(app, project)
            entry["detail"] = healthy or "yes"
        if healthy:
            return out.but(error=f"already healthy: {healthy}")
    with rec.step("commit") as entry:
        sha = commit_validated(app, project, proposal, validated, rec.run_id)
        entry["detail"] = sha
    with rec.step("merge") as entry:
        bring_in(app, project, proposal.id, sha, rec.run_id)
        entry["detail"] = sha
    out = out.but(commit_sha=sha, status="ok")
    if stop >= MODES.index("push"):
        owe_restart(app, project, sha, rec.run_id)  # a run killed from here on: the next one finishes it
        with rec.step("push") as entry:  # refused or diverged: recorded, and the unit still runs the fix
            entry["outcome"], entry["detail"] = pushed, why = push_or_hold(app, project, run_id=rec.run_id)
        out = restart_after_push(app, project, rec, out)
        paid(app, project)
        if pushed == "failed" and out.status == "ok" and not out.error:  # running locally; the push still owed
            out = out.but(status="failed", error=why, exit_code=errors.TOOL_FAILED)
    return out


def _actor(request: Request) -> str:
    """Who moves the proposal: the person's channel for an approval, pimainteno for its own runs."""
    return request.source if request.proposal_id is not None else "pimainteno"


def _known_failure(app: App, project: Project, rec: Recorder, proposal: records.Proposal) -> str | None:
    """When the same change failed before: the new proposal is discarded and the reason returned."""
    why = records.failed_before(app.db, project.name, proposal.fingerprint, other_than=proposal.id)
    if why is None:
        return None
    said = f"the same change was {why}; not trying it again (ask with `pimainteno run --retry-known`)"
    with rec.step("memory") as entry:
        entry["outcome"], entry["detail"] = "skipped", said
        records.transition(app.db, proposal.id, ProposalStatus.DISCARDED, actor="pimainteno", reason=said)
    return said  # logged once, as the run's outcome


def _approved(app: App, project: Project, request: Request) -> records.Proposal:
    """The stored proposal a request names, marked approved by whoever asked (it must still be waiting)."""
    assert request.proposal_id is not None
    proposal = records.get_proposal(app.db, request.proposal_id)
    if proposal.project != project.name:
        raise InputError(f"proposal #{proposal.id} belongs to {proposal.project}, not {project.name}; not applying it")
    if proposal.status not in records.WAITING:
        raise InputError(f"{records.decided(app.db, proposal.id)}; not applying it")
    if proposal.status == ProposalStatus.PROPOSED:
        records.transition(app.db, proposal.id, ProposalStatus.APPROVED, actor=request.source,
                           reason=request.reason or f"approved on the {request.source}",
                           expect=ProposalStatus.PROPOSED)  # fmt: skip
    return records.get_proposal(app.db, proposal.id)


def run_many(app: App, requests: Iterable[Request], *, keep_going: bool,
             on_outcome: Callable[[RunOutcome], object] = lambda o: None) -> list[RunOutcome]:  # fmt: skip
    """Run each request in turn; with keep_going one project's error does not stop the others."""
    outcomes = []
    for request in requests:
        try:
            outcome = run(app, request)
        except PimaintenoError as e:
            if not keep_going:
                raise
            outcome = RunOutcome(request.project, "failed", error=str(e), exit_code=errors.TOOL_FAILED)
        outcomes.append(outcome)
        on_outcome(outcome)
    return outcomes
