"""Getting a change into the project and to its remote: apply (staged), commit, bring in, push.

`apply_patch` and `commit_applied` are the by-hand path (`pimainteno propose | apply`, then
`commit`); a run brings in the commit `validate.commit_validated` built with `bring_in`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pimainteno import git, records
from pimainteno.errors import SEE_DOCTOR, InputError, PatchRejected, PimaintenoError, ToolError
from pimainteno.records import ProposalStatus
from pimainteno.words import plural

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project

log = logging.getLogger("pimainteno")


@dataclass(frozen=True)
class Applied:
    project: str
    proposal_id: int | None
    paths: list[str]
    checked_only: bool


@dataclass(frozen=True)
class Committed:
    sha: str
    message: str
    proposal_id: int | None


def pending_key(project: Project) -> str:
    return f"apply.{project.name}.pending"


def resolve_patch(app: App, text: str | None, project_name: str | None,
                  proposal_id: int | None) -> tuple[Project, str, int | None]:  # fmt: skip
    """Which project and patch: a stored proposal, or text naming its project in its header."""
    from pimainteno.patch import read_header

    if proposal_id is not None:
        proposal = records.get_proposal(app.db, proposal_id)
        if project_name and project_name != proposal.project:
            raise InputError(f"proposal #{proposal_id} is for project {proposal.project!r}, not {project_name!r}")
        return app.project(proposal.project), proposal.diff, proposal_id
    if not text or not text.strip():
        raise PatchRejected("patch rejected: the patch is empty (nothing on stdin or in the file)")
    named, header_id = read_header(text)
    name = project_name or named
    if not name:
        raise InputError("the patch names no project; pass --project NAME")
    project = app.project(name)
    if header_id is not None:
        why = _no_credit(app, project, text, header_id)
        if why:
            log.warning("%s: applying it as a plain diff, not as proposal #%d: %s", project.name, header_id, why)
            header_id = None
    return project, text, header_id


def _no_credit(app: App, project: Project, text: str, proposal_id: int) -> str | None:
    """Why a patch's `proposal=N` header earns it no credit for proposal N; None when it is exactly N's diff."""
    try:
        proposal = records.get_proposal(app.db, proposal_id)
    except InputError:
        return "there is no such proposal"
    if proposal.project != project.name:
        return f"that proposal belongs to project {proposal.project!r}"
    try:
        fingerprint = git.patch_id(project.path, text)
    except git.GitError:
        fingerprint = None
    if not fingerprint or fingerprint != proposal.fingerprint:
        return "the patch is not that proposal's diff (it was edited)"
    return None


def check(project: Project, text: str) -> tuple[str, list[str]]:
    """Policy and `git apply --check`; the normalised patch (what git will apply) and its paths."""
    from pimainteno.patch import check_patch, git_apply_check

    parsed = check_patch(text, project.path, project.policy, project=project.name)
    problem = git_apply_check(project.path, parsed.text)
    if problem:
        raise PatchRejected(f"patch rejected: it does not apply to {project.name}: {problem}")
    return parsed.text, sorted(parsed.paths)


def apply_patch(app: App, text: str | None, *, project_name: str | None = None, proposal_id: int | None = None,
                check_only: bool = False, actor: str = "cli") -> Applied:  # fmt: skip
    """Check a patch and stage it in the project's working tree; touches nothing unless every check passed."""
    project, text, proposal_id = resolve_patch(app, text, project_name, proposal_id)
    if proposal_id is not None and not check_only:
        _refuse_stale(app, project, proposal_id, actor)
    text, paths = check(project, text)
    busy = sorted(git.changed_paths(project.path) & set(paths))
    if busy:
        raise InputError(
            f"{project.name} has uncommitted changes in {', '.join(busy)}, which the patch touches; "
            "commit or stash them first (nothing was changed)"
        )
    if check_only:
        log.info("%s: the patch passes the policy and applies cleanly (nothing changed: --check)", project.name)
        return Applied(project.name, proposal_id, paths, True)
    from pimainteno.db import transaction

    # One write transaction from the lifecycle check to the `applied` mark: a Reject (or a second apply)
    # waits for it and then finds the proposal applied, instead of landing between the check and the tree.
    staged = False
    try:
        with transaction(app.db):
            if proposal_id is not None:  # refuse before touching the tree when its lifecycle says no
                status = records.get_proposal(app.db, proposal_id).status
                if ProposalStatus.APPLIED not in records.TRANSITIONS[status]:
                    raise records.IllegalTransition(
                        f"proposal #{proposal_id} is {status}; only a waiting or proven proposal can be applied "
                        "(nothing was changed)"
                    )
            git.git(project.path, "apply", "--index", "--whitespace=nowarn", "-", input=text)
            staged = True
            state = {"proposal_id": proposal_id, "paths": paths, "head": git.head(project.path), "at": records.now()}
            records.set_status(app.db, pending_key(project), json.dumps(state))
            if proposal_id is not None:
                records.transition(app.db, proposal_id, ProposalStatus.APPLIED, actor=actor,
                                   reason="applied by hand", expect=status)  # fmt: skip
    except BaseException:
        if staged:  # the database did not take it (full, killed): the touched files go back as they were
            with contextlib.suppress(PimaintenoError):
                git.git(project.path, "apply", "-R", "--index", "--whitespace=nowarn", "-", input=text)
        raise
    log.info("%s: applied and staged %s: %s", project.name, plural(len(paths), "file"), ", ".join(paths))
    return Applied(project.name, proposal_id, paths, False)


def _refuse_stale(app: App, project: Project, proposal_id: int, actor: str) -> None:
    """A waiting proposal that no longer applies at HEAD leaves the approval list as `stale`, and is refused."""
    from pimainteno.pipeline.validate import why_stale

    proposal = records.get_proposal(app.db, proposal_id)
    if proposal.status not in records.WAITING:
        return  # the lifecycle check refuses it with its own reason
    why = why_stale(project, proposal, git.head(project.path))
    if why:
        records.transition(app.db, proposal_id, ProposalStatus.STALE, actor=actor, reason=why, expect=proposal.status)
        raise PatchRejected(f"{why}; proposal #{proposal_id} is marked stale and can be proposed again")


def record_commit(app: App, project: Project, sha: str, message: str, proposal_id: int | None, run_id: int | None,
                  kind: str = "patch") -> None:  # fmt: skip
    records.add_commit(app.db, project=project.name, sha=sha, message=message, proposal_id=proposal_id,
                       run_id=run_id, kind=kind, author=app.config.git.author_or_default)  # fmt: skip
    if proposal_id is not None and kind == "patch":
        records.transition(app.db, proposal_id, ProposalStatus.COMMITTED, actor="pimainteno", reason=sha)


def commit_applied(app: App, project: Project, *, message: str | None = None, run_id: int | None = None) -> Committed:
    """Commit exactly the paths `apply_patch` staged (whatever else the user staged stays staged)."""
    from pimainteno.pipeline.validate import commit_subject

    raw = records.status_value(app.db, pending_key(project))
    if not raw:
        raise InputError(f"nothing applied to commit in {project.name}; run `pimainteno apply` first")
    state = json.loads(raw)
    paths, proposal_id = state["paths"], state["proposal_id"]
    if git.head(project.path) != state["head"]:
        raise InputError(f"{project.name}: HEAD moved since the patch was applied; commit it yourself or re-apply")
    staged = git.git(project.path, "diff", "--cached", "--name-only", "--", *paths).split()
    if not staged:
        raise InputError(f"{project.name}: the applied patch is no longer staged; nothing to commit")
    diff = git.git(project.path, "diff", "--cached", "--", *paths)
    stored = records.commit_subject_of(app.db, proposal_id) if proposal_id is not None else None
    subject = message or stored or commit_subject(app, project, project.path, diff, paths, run_id)
    text = git.commit_message(subject, proposal_id)
    sha = git.make_commit(project.path, text, app.config.git.author_or_default, paths=paths)
    record_commit(app, project, sha, text.strip(), proposal_id, run_id)
    records.delete_status(app.db, pending_key(project))
    log.info("%s: committed %s %s", project.name, sha[:12], subject)
    return Committed(sha, text.strip(), proposal_id)


def bring_in(app: App, project: Project, proposal_id: int | None, sha: str, run_id: int | None,
             kind: str = "patch") -> None:  # fmt: skip
    """Fast-forward the project to a commit made in a worktree; git refuses rather than overwrite local work.

    The commit is recorded first, so a run killed right after the merge still pushes it next time;
    `recover` forgets the record if the merge never happened.
    """
    message = git.git(project.path, "log", "-1", "--format=%B", sha).strip()
    record_commit(app, project, sha, message, proposal_id, run_id, kind)
    try:
        git.fast_forward(project.path, sha)
    except git.GitError as e:
        records.forget_commit(app.db, project.name, sha)
        if proposal_id is not None and kind == "patch":
            records.transition(app.db, proposal_id, ProposalStatus.FAILED, actor="pimainteno",
                               reason=f"could not bring the commit in: {e}")  # fmt: skip
        what = "validated commit" if kind == "patch" else "revert"
        raise InputError(f"{project.name}: could not fast-forward to the {what}: {merge_refusal(e)}") from None


def merge_refusal(e: git.GitError) -> str:
    """Why `git merge --ff-only` refused, naming the files in the way (git lists them after its first line)."""
    lines = [ln.rstrip() for ln in e.stderr.splitlines()]
    in_the_way = [ln.strip() for ln in lines if ln.startswith("\t")]
    if in_the_way:
        untracked = any("untracked working tree files" in ln for ln in lines)
        kind = "untracked files" if untracked else "local changes to"
        return (f"{kind} {', '.join(in_the_way)} would be overwritten; "
                "commit, stash or remove them, the next run tries again (nothing was changed)")  # fmt: skip
    if any("Not possible to fast-forward" in ln or "not possible to fast-forward" in ln for ln in lines):
        return "the branch has new commits; the next run starts from them (nothing was changed)"
    said = next((ln.strip() for ln in lines if ln.startswith(("fatal:", "error:"))), str(e))
    return f"{said} (nothing was changed)"


def target_ref(project: Project) -> str:
    branch = project.push_branch or project.branch or git.current_branch(project.path)
    if not branch:
        raise InputError(f"{project.name}: HEAD is detached and no branch is configured; set branch in [[project]]")
    return f"refs/heads/{branch}"


def push(app: App, project: Project, *, run_id: int | None = None) -> str:
    """Push HEAD; a rejected push is recorded on the unpushed commits and raised, the commits stay."""
    ref = target_ref(project)
    sha = git.head(project.path)
    log.info("%s: pushing %s to %s %s", project.name, sha[:12], project.remote, ref)
    try:
        git.git(project.path, "push", "--porcelain", "--quiet", project.remote, f"HEAD:{ref}",
                timeout=app.config.git.timeout)  # fmt: skip
    except git.GitError as e:
        reason = refusal(e, project, ref)
        records.note_push_error(app.db, project.name, reason)
        raise ToolError(f"{project.name}: {reason}") from None
    for row in records.mark_pushed(app.db, project.name, f"{project.remote} {ref}"):
        if row["proposal_id"] is not None and row["kind"] == "patch":
            current = records.get_proposal(app.db, row["proposal_id"]).status
            if current == ProposalStatus.COMMITTED:
                records.transition(app.db, row["proposal_id"], ProposalStatus.PUSHED, actor="pimainteno",
                                   reason=f"{project.remote} {ref}")  # fmt: skip
    return ref


def refusal(e: git.GitError, project: Project, ref: str) -> str:
    """Why the remote refused, from git's per-ref status (`!` lines) and the remote's own words."""
    refused = [ln.split("\t")[-1].strip() for ln in e.stdout.splitlines() if ln.startswith("!")]
    remote = [ln[len("remote:") :].strip() for ln in e.stderr.splitlines() if ln.startswith("remote:")]
    said = "; ".join(x for x in remote if x)[:300]
    if any("(non-fast-forward)" in r or "(fetch first)" in r for r in refused):
        return f"push to {project.remote} {ref} rejected (not a fast-forward); the commit stays local for the next run"
    if refused:
        why = refused[0] + (f": {said}" if said else "")
        return f"push to {project.remote} {ref} refused: {why}; the commit stays local for the next run"
    # no per-ref verdict: the remote did not answer (URL, network, credentials)
    return f"{e}; the commit stays local for the next run; {SEE_DOCTOR}"
