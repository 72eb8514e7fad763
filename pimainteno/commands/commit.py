"""`pimainteno commit PROJECT`: commit exactly the applied patch, with a model-written message."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pimainteno import db as dbm
from pimainteno import git
from pimainteno.app import App
from pimainteno.commands.apply import pending_key, set_proposal_status
from pimainteno.config import Project
from pimainteno.errors import InputError
from pimainteno.providers.base import accounted, clean_subject, fallback_subject, get_provider

log = logging.getLogger("pimainteno")


@dataclass
class Committed:
    sha: str
    message: str
    proposal_id: int | None


def commit_message(app: App, project: Project, worktree: Path, diff: str, files: list[str], run_id: int | None) -> str:
    """One short imperative sentence from the provider; a deterministic one if it fails."""
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


def full_message(subject: str, proposal_id: int | None) -> str:
    return subject + (f"\n\nPimainteno-Proposal: {proposal_id}\n" if proposal_id is not None else "\n")


def identity(app: App) -> list[str]:
    """`-c user.name=... -c user.email=...` for `git`, so a machine without a git identity can commit."""
    author = app.config.git.author_or_default
    name, email = author[: author.index("<")].strip(), author[author.index("<") + 1 : -1]
    return ["-c", f"user.name={name}", "-c", f"user.email={email}"]


def commit_args(app: App) -> list[str]:
    """`commit` with pimainteno as the author (whatever GIT_AUTHOR_* says), no hooks, message on stdin."""
    return ["commit", "--quiet", "--no-verify", f"--author={app.config.git.author_or_default}", "-F", "-"]


def record(app: App, project: Project, sha: str, message: str, proposal_id: int | None, run_id: int | None,
           kind: str = "patch") -> None:  # fmt: skip
    dbm.insert(
        app.db,
        "commits",
        {"project": project.name, "run_id": run_id, "proposal_id": proposal_id, "sha": sha, "kind": kind,
         "message": message, "author": app.config.git.author_or_default, "created_at": dbm.now()},
    )  # fmt: skip
    if proposal_id is not None and kind == "patch":
        set_proposal_status(app, proposal_id, "committed")


def commit(app: App, project: Project, *, message: str | None = None, run_id: int | None = None) -> Committed:
    row = app.db.execute("SELECT value FROM status WHERE key = ?", [pending_key(project)]).fetchone()
    if not row:
        raise InputError(f"nothing applied to commit in {project.name}; run `pimainteno apply` first")
    state = json.loads(row[0])
    paths, proposal_id = state["paths"], state["proposal_id"]
    if git.head(project.path) != state["head"]:
        raise InputError(f"{project.name}: HEAD moved since the patch was applied; commit it yourself or re-apply")
    staged = git.git(project.path, "diff", "--cached", "--name-only", "--", *paths).split()
    if not staged:
        raise InputError(f"{project.name}: the applied patch is no longer staged; nothing to commit")
    diff = git.git(project.path, "diff", "--cached", "--", *paths)
    subject = message or commit_message(app, project, project.path, diff, paths, run_id)
    text = full_message(subject, proposal_id)
    # `-- paths` with --only: exactly the patch's files, whatever else the user has staged.
    git.git(project.path, *identity(app), *commit_args(app), "--only", "--", *paths, input=text)
    sha = git.head(project.path)
    record(app, project, sha, text.strip(), proposal_id, run_id)
    app.db.execute("DELETE FROM status WHERE key = ?", [pending_key(project)])
    log.info("%s: committed %s %s", project.name, sha[:12], subject)
    return Committed(sha, text.strip(), proposal_id)
