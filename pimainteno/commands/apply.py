"""`pimainteno apply`: validate a patch (policy + `git apply --check`) and apply it to the working tree.

Touches nothing unless every check passed; `git apply` itself is all-or-nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pimainteno import db as dbm
from pimainteno import git
from pimainteno.app import App
from pimainteno.config import Project
from pimainteno.errors import InputError, PatchRejected

log = logging.getLogger("pimainteno")


@dataclass
class Applied:
    project: str
    proposal_id: int | None
    paths: list[str]
    checked_only: bool


def pending_key(project: Project) -> str:
    return f"apply.{project.name}.pending"


def resolve(
    app: App, text: str | None, project_name: str | None, proposal_id: int | None
) -> tuple[Project, str, int | None]:
    """Which project and patch: a stored proposal, or text naming its project in its header."""
    from pimainteno.patch import read_header

    if proposal_id is not None:
        from pimainteno.commands.propose import load_proposal

        proposal, _ = load_proposal(app, proposal_id)
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


def apply(
    app: App,
    text: str | None,
    *,
    project_name: str | None = None,
    proposal_id: int | None = None,
    check_only: bool = False,
) -> Applied:
    project, text, proposal_id = resolve(app, text, project_name, proposal_id)
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
    git.git(project.path, "apply", "--index", "--whitespace=nowarn", "-", input=text)
    state = {"proposal_id": proposal_id, "paths": paths, "head": git.head(project.path), "at": dbm.now()}
    dbm.set_status(app.db, pending_key(project), json.dumps(state))
    if proposal_id is not None:
        set_proposal_status(app, proposal_id, "applied")
    log.info("%s: applied and staged %d files: %s", project.name, len(paths), ", ".join(paths))
    return Applied(project.name, proposal_id, paths, False)


def set_proposal_status(app: App, proposal_id: int, status: str, reason: str | None = None, **extra: object) -> None:
    values = {"status": status, "updated_at": dbm.now(), **extra}
    if reason is not None:
        values["status_reason"] = reason
    dbm.update(app.db, "proposals", proposal_id, values)
