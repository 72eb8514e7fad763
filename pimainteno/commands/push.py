"""`pimainteno push PROJECT`: fast-forward push to the configured remote and branch, never forced."""

from __future__ import annotations

import logging

from pimainteno import db as dbm
from pimainteno import git
from pimainteno.app import App
from pimainteno.config import Project
from pimainteno.errors import InputError, ToolError

log = logging.getLogger("pimainteno")


def target_ref(project: Project) -> str:
    branch = project.push_branch or project.branch or git.current_branch(project.path)
    if not branch:
        raise InputError(f"{project.name}: HEAD is detached and no branch is configured; set branch in [[project]]")
    return f"refs/heads/{branch}"


def push(app: App, project: Project, *, run_id: int | None = None) -> str:
    """Push HEAD; a rejected push is recorded on the unpushed commits and raised, the commit stays."""
    ref = target_ref(project)
    sha = git.head(project.path)
    log.info("%s: pushing %s to %s %s", project.name, sha[:12], project.remote, ref)
    try:
        git.git(project.path, "push", "--porcelain", "--quiet", project.remote, f"HEAD:{ref}",
                timeout=app.config.git.timeout)  # fmt: skip
    except git.GitError as e:
        reason = refusal(e, project, ref)
        app.db.execute(
            "UPDATE commits SET push_error = ? WHERE project = ? AND pushed_at IS NULL", [reason, project.name]
        )
        raise ToolError(f"{project.name}: {reason}") from None
    app.db.execute(
        "UPDATE commits SET pushed_at = ?, push_ref = ?, push_error = NULL WHERE project = ? AND pushed_at IS NULL",
        [dbm.now(), f"{project.remote} {ref}", project.name],
    )
    app.db.execute(
        "UPDATE proposals SET status = 'pushed', updated_at = ? WHERE status = 'committed' AND project = ?",
        [dbm.now(), project.name],
    )
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


def unpushed(app: App, project: Project) -> int:
    row = app.db.execute(
        "SELECT count(*) FROM commits WHERE project = ? AND pushed_at IS NULL", [project.name]
    ).fetchone()
    return int(row[0])
