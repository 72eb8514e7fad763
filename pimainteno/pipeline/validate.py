"""Prove a proposal: the patch policy, then the project's own tests on HEAD + the patch, in the proof sandbox.

The tests run in bubblewrap with the validation worktree shown at the project's own path
(pimainteno/sandbox.py); afterwards the worktree must still be exactly HEAD + the proposal
(pimainteno/proof.py). `validate` only judges; `commit_validated` then builds pimainteno's commit
from the proposal's own checked diff on the HEAD it was proven on — never from whatever a worktree
holds after the tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pimainteno import git, proof, records, sandbox
from pimainteno.errors import SEE_DOCTOR, PatchRejected, ToolError, ValidationFailed
from pimainteno.procs import DID_NOT_START, CommandResult, tail
from pimainteno.records import ProposalStatus

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project

log = logging.getLogger("pimainteno")
TEST_OUTPUT_CHARS = 16_000
UNSAFE = "sandbox = false: the tests run with your full rights, unsandboxed (UNSAFE; see docs/pipeline.md)"


@dataclass(frozen=True)
class Validated:
    """A proposal that passed: the exact patch text checked and applied, and the HEAD and tree it was proven on."""

    proposal_id: int
    head: str
    patch: str
    proven: bool  # the tests ran and passed (False: checked only, no test command)
    tree: str = ""  # HEAD + the patch as git writes it: the tree the commit must have


class TestsFailed(ValidationFailed):
    """The project's tests failed on the patch; ``output`` is their tail (fed back to the model on a retry)."""

    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.output = output


def sandbox_problem(project: Project) -> str | None:
    """Why the project's tests cannot run in the proof sandbox here (one line with the fix); None when they can.

    With `sandbox = false` there is no problem, but a warning on every run.
    """
    if not project.sandbox.enabled:
        log.warning("%s: %s", project.name, UNSAFE)
        return None
    problem = sandbox.problem()
    if problem:
        return f"{project.name}: the tests cannot run in the proof sandbox: {problem} (or set sandbox = false: unsafe)"
    return None


def run_tests(project: Project, worktree: Path, timeout: float | None = None) -> CommandResult:
    """The project's test command on ``worktree``, shown at the project's path, with its sandbox settings."""
    assert project.test is not None
    box = project.sandbox
    return sandbox.run_tests(project.test, worktree, project.path, project.test_timeout if timeout is None else timeout,
                             enabled=box.enabled, network=box.network, writable=box.writable)  # fmt: skip


def why_stale(project: Project, proposal: records.Proposal, head: str) -> str | None:
    """Why a proposal no longer applies at ``head`` (HEAD moved since it was made); None when it applies."""
    if head == proposal.base_head:
        return None
    log.info("%s: HEAD moved since proposal #%d; checking it still applies", project.name, proposal.id)
    try:
        proof.expected_tree(project.path, head, proposal.diff)
    except PatchRejected as e:
        return str(e)
    return None


def validate(app: App, project: Project, proposal: records.Proposal, *, actor: str = "pimainteno") -> Validated:
    """Check the patch and prove it on HEAD + patch; the proposal ends validated, checked, rejected or stale.

    Raises PatchRejected (policy, or it does not apply), TestsFailed, proof.RepositoryChanged (the
    tests changed the worktree) — the proposal is marked first — or ToolError when the sandbox cannot
    run (the proposal is left as it was) or the tests did not start (the proposal is `failed`).
    """
    from pimainteno.patch import check_patch

    head = git.head(project.path)
    stale = why_stale(project, proposal, head)
    if stale:
        records.transition(app.db, proposal.id, ProposalStatus.STALE, actor=actor, reason=stale)
        raise PatchRejected(f"{stale}; proposal #{proposal.id} is marked stale and can be proposed again")
    try:
        text = check_patch(proposal.diff, project.path, project.policy, project=project.name).text
    except PatchRejected as e:
        records.transition(app.db, proposal.id, ProposalStatus.REJECTED, actor=actor, reason=str(e))
        raise
    if project.test:
        problem = sandbox_problem(project)
        if problem:
            raise ToolError(problem)
    with git.temporary_worktree(project.path, app.state_dir, f"{project.name}-validate", rev=head) as wt:
        try:
            git.git(wt, "apply", "--index", "--whitespace=nowarn", "-", input=text)
        except git.GitError as e:
            moved = head != proposal.base_head
            why = f"patch rejected: it does not apply to {project.name} at HEAD: {e}"
            status = ProposalStatus.STALE if moved else ProposalStatus.REJECTED
            records.transition(app.db, proposal.id, status, actor=actor, reason=why)
            raise PatchRejected(why + ("; it is marked stale and can be proposed again" if moved else "")) from None
        if not project.test:
            log.warning("%s: no test command configured; the patch is checked but not proven", project.name)
            records.transition(app.db, proposal.id, ProposalStatus.CHECKED, actor=actor,
                               reason="passed the patch policy and applies; no test command to prove it")  # fmt: skip
            return Validated(proposal.id, head, text, proven=False, tree=proof.expected_tree(wt, head, text))
        shown = project.test if isinstance(project.test, str) else " ".join(project.test)
        log.info("%s: proving proposal #%d with `%s`", project.name, proposal.id, shown)
        box = project.sandbox
        try:
            proven = proof.prove(project.test, wt, project.path, text, project.test_timeout, enabled=box.enabled,
                                 network=box.network, writable=box.writable)  # fmt: skip
        except proof.RepositoryChanged as e:
            records.transition(app.db, proposal.id, ProposalStatus.REJECTED, actor=actor, reason=str(e))
            raise proof.RepositoryChanged(f"proposal #{proposal.id} rejected: {e}; nothing of it lands") from None
    if proven.failure and (proven.result.error or proven.result.exit_status in DID_NOT_START):
        # The tests did not run: a set-up problem, not a verdict on the change. `failed`, so the memory
        # of failed fixes does not hold it against the same change once the set-up is fixed.
        said = proven.result.error or tail(proven.result.output, 200).strip()
        failure = f"the tests did not start ({said}); {SEE_DOCTOR}"
        records.transition(app.db, proposal.id, ProposalStatus.FAILED, actor=actor, reason=failure)
        raise ToolError(f"proposal #{proposal.id} not proven: {failure}; not applied")
    if proven.failure:
        failure = proven.failure
        output = records.scrub(tail(proven.result.output, TEST_OUTPUT_CHARS))
        records.transition(app.db, proposal.id, ProposalStatus.REJECTED, actor=actor, reason=failure,
                           test_output=output)  # fmt: skip
        raise TestsFailed(f"proposal #{proposal.id} rejected: {failure}; not applied", output)
    records.transition(app.db, proposal.id, ProposalStatus.VALIDATED, actor=actor,
                       reason=f"`{shown}` passed" + ("" if box.enabled else " (unsandboxed: sandbox = false)"))  # fmt: skip
    return Validated(proposal.id, proven.expected.head, text, proven=True, tree=proven.expected.tree)


def commit_validated(app: App, project: Project, proposal: records.Proposal, validated: Validated,
                     run_id: int | None) -> str:  # fmt: skip
    """pimainteno's commit of exactly the validated patch on the HEAD it was proven on; its sha (not yet merged).

    Built with `git commit-tree` from the proposal's checked diff (proof.commit_proposal): the tree
    must be the one the tests proved; no worktree's content is ever committed.
    """
    subject = records.commit_subject_of(app.db, proposal.id)  # the patch call's own subject: no second call
    if not subject and app.config.provider_for(project) == "command":  # a fixer's subject is made from the diff
        subject = commit_subject(app, project, project.path, proposal.diff, proposal.files, run_id)
    elif not subject:  # hand patches, a missing answer: ask the model, in a worktree holding the change
        with git.temporary_worktree(project.path, app.state_dir, f"{project.name}-commit", rev=validated.head) as wt:
            git.git(wt, "apply", "--index", "--whitespace=nowarn", "-", input=validated.patch)
            subject = commit_subject(app, project, wt, proposal.diff, proposal.files, run_id)
    expected = proof.Expected(validated.head, validated.tree, "", {})
    message = git.commit_message(subject, proposal.id)
    return proof.commit_proposal(project.path, expected, validated.patch, message,
                                 author=app.config.git.author_or_default)  # fmt: skip


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
