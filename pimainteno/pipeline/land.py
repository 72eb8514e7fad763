"""Getting a change into the project and to its remote: apply (staged), commit, bring in, push.

`apply_patch` and `commit_applied` are the by-hand path (`pimainteno propose | apply`, then
`commit`); a run brings in the commit `validate.commit_validated` built with `bring_in`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pimainteno import git, records
from pimainteno.errors import InputError, PatchRejected, ToolError
from pimainteno.records import ProposalStatus

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
    return app.project(name), text, header_id


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
    if proposal_id is not None:  # refuse before touching the tree when its lifecycle says no
        status = records.get_proposal(app.db, proposal_id).status
        if ProposalStatus.APPLIED not in records.TRANSITIONS[status]:
            raise records.IllegalTransition(
                f"proposal #{proposal_id} is {status}; only a waiting or proven proposal can be applied (nothing was changed)"
            )
    git.git(project.path, "apply", "--index", "--whitespace=nowarn", "-", input=text)
    state = {"proposal_id": proposal_id, "paths": paths, "head": git.head(project.path), "at": records.now()}
    records.set_status(app.db, pending_key(project), json.dumps(state))
    if proposal_id is not None:
        records.transition(app.db, proposal_id, ProposalStatus.APPLIED, actor=actor, reason="applied by hand")
    log.info("%s: applied and staged %d files: %s", project.name, len(paths), ", ".join(paths))
    return Applied(project.name, proposal_id, paths, False)


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
        raise InputError(
            f"{project.name}: could not fast-forward to the {'validated commit' if kind == 'patch' else 'revert'} "
            f"({e}); local changes or new commits are in the way, nothing was changed"
        ) from None


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
    return f"{e}; the commit stays local for the next run"
