"""The run chain as a library: summarize → propose → validate → commit → merge → push → restart → rollback.

One request type (`Request`) for `run`, `drain` and `heal`; every function returns its outcome.

    request     Request, RunOutcome, MODES, exit_code
    recorder    Recorder (the `runs` row), project_lock, recover (after a killed run)
    propose     summarize, propose (the patch from an isolated worktree)
    validate    validate (policy + the project's tests), commit_validated (the commit of exactly that patch)
    land        apply_patch / commit_applied (by hand), bring_in (fast-forward), push
    restart     restart (recorded), restart_after_push (and the rollback), revert, finish_owed (the restart
                and rollback a killed run left unfinished)
    pending     push_pending (ask the remote first; replay on a remote that moved on, or `diverged`)
    needed      already_healthy (a heal that is no longer needed ends `nothing`)
    leftover    what a killed run left: the restart it owed (owe_restart, owed, paid), its `restarts` rows
    chain       run, run_many
    actions     dispatch (what a queued trigger asks for), reject_proposal
"""

from pimainteno.pipeline.actions import Outcome, dispatch, reject_proposal
from pimainteno.pipeline.chain import run, run_many
from pimainteno.pipeline.land import Applied, Committed, apply_patch, bring_in, commit_applied, push
from pimainteno.pipeline.propose import propose, summarize
from pimainteno.pipeline.recorder import Recorder, project_lock, recover
from pimainteno.pipeline.request import MODES, Request, RunOutcome, exit_code
from pimainteno.pipeline.restart import Restarted, restart, restart_after_push, revert
from pimainteno.pipeline.validate import TestsFailed, Validated, commit_validated, validate

__all__ = [
    "MODES", "Applied", "Committed", "Outcome", "Recorder", "Request", "Restarted", "RunOutcome", "TestsFailed",
    "Validated", "apply_patch", "bring_in", "commit_applied", "commit_validated", "dispatch", "exit_code",
    "project_lock", "propose", "push", "recover", "reject_proposal", "restart", "restart_after_push",
    "revert", "run", "run_many", "summarize", "validate",
]  # fmt: skip
