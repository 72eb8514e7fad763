"""Prove a proposal: the patch policy, then the project's own tests on HEAD + the patch in a fresh worktree.

`validate` only judges; `commit_validated` then builds pimainteno's commit from the proposal's own
checked diff on the HEAD it was proven on — never from whatever a worktree holds after the tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pimainteno import git, records
from pimainteno.errors import PatchRejected, ValidationFailed
from pimainteno.procs import run_command, tail
from pimainteno.records import ProposalStatus

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project

log = logging.getLogger("pimainteno")
TEST_OUTPUT_CHARS = 16_000


@dataclass(frozen=True)
class Validated:
    """A proposal that passed: the exact patch text checked and applied, and the HEAD it was proven on."""

    proposal_id: int
    head: str
    patch: str
    proven: bool  # the tests ran and passed (False: checked only, no test command)


class TestsFailed(ValidationFailed):
    """The project's tests failed on the patch; ``output`` is their tail (fed back to the model on a retry)."""

    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.output = output


def validate(app: App, project: Project, proposal: records.Proposal, *, actor: str = "pimainteno") -> Validated:
    """Check the patch and run the tests on HEAD + patch; the proposal ends validated, checked, rejected or stale.

    Raises PatchRejected (policy, or it does not apply) or TestsFailed; the proposal is marked first.
    """
    from pimainteno.patch import check_patch

    head = git.head(project.path)
    if head != proposal.base_head:
        log.info("%s: HEAD moved since proposal #%d; checking it still applies", project.name, proposal.id)
    with git.temporary_worktree(project.path, app.state_dir, f"{project.name}-validate") as wt:
        try:
            text = check_patch(proposal.diff, project.path, project.policy, project=project.name).text
        except PatchRejected as e:
            records.transition(app.db, proposal.id, ProposalStatus.REJECTED, actor=actor, reason=str(e))
            raise
        try:
            git.git(wt, "apply", "--index", "--whitespace=nowarn", "-", input=text)
        except git.GitError as e:
            moved = head != proposal.base_head
            why = f"patch rejected: it does not apply to {project.name} at HEAD: {e}"
            status = ProposalStatus.STALE if moved else ProposalStatus.REJECTED
            records.transition(app.db, proposal.id, status, actor=actor, reason=why)
            raise PatchRejected(why) from None
        if not project.test:
            log.warning("%s: no test command configured; the patch is checked but not proven", project.name)
            records.transition(app.db, proposal.id, ProposalStatus.CHECKED, actor=actor,
                               reason="passed the patch policy and applies; no test command to prove it")  # fmt: skip
            return Validated(proposal.id, head, text, proven=False)
        shown = project.test if isinstance(project.test, str) else " ".join(project.test)
        log.info("%s: proving proposal #%d with `%s`", project.name, proposal.id, shown)
        result = run_command(project.test, wt, project.test_timeout)
    if not result.ok:
        why = "timed out" if result.timed_out else result.error or f"failed (exit status {result.exit_status})"
        output = records.scrub(tail(result.output, TEST_OUTPUT_CHARS))
        records.transition(app.db, proposal.id, ProposalStatus.REJECTED, actor=actor, reason=f"tests {why}",
                           test_output=output)  # fmt: skip
        raise TestsFailed(f"proposal #{proposal.id} rejected: the tests {why}; not applied", output)
    records.transition(app.db, proposal.id, ProposalStatus.VALIDATED, actor=actor, reason=f"`{shown}` passed")
    return Validated(proposal.id, head, text, proven=True)


def commit_validated(app: App, project: Project, proposal: records.Proposal, validated: Validated,
                     run_id: int | None) -> str:  # fmt: skip
    """pimainteno's commit of exactly the validated patch on the HEAD it was proven on; its sha (not yet merged)."""
    with git.temporary_worktree(project.path, app.state_dir, f"{project.name}-commit", rev=validated.head) as wt:
        git.git(wt, "apply", "--index", "--whitespace=nowarn", "-", input=validated.patch)
        subject = records.commit_subject_of(app.db, proposal.id) or commit_subject(
            app, project, wt, proposal.diff, proposal.files, run_id
        )  # the patch call's own subject: no second model call
        return git.make_commit(wt, git.commit_message(subject, proposal.id), app.config.git.author_or_default)


def commit_subject(app: App, project: Project, worktree: Path, diff: str, files: list[str], run_id: int | None) -> str:
    """One short imperative sentence from the provider; a deterministic one if it fails."""
    from pimainteno.providers.base import accounted, clean_subject, fallback_subject, get_provider

    name = app.config.provider_for(project)
    try:
        provider = get_provider(name, app.config.llm, project.command)
        with accounted(app.db, name, "commit-message", project.name, run_id) as box:
            call = box["call"] = provider.commit_message(project, worktree, diff)
        subject = clean_subject(call.text) if call.ok else None
        if not call.ok:
            log.warning("%s: commit message from %s failed (%s); using a plain one", project.name, name, call.error)
    except Exception as e:  # a commit never waits on the model
        log.warning("%s: commit message from %s failed (%s); using a plain one", project.name, name, e)
        subject = None
    return subject or fallback_subject(files)
