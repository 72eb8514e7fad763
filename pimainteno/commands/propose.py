"""`pimainteno propose PROJECT`: a patch made in an isolated worktree, stored and printed.

The project's working tree is never touched: the provider edits a worktree at HEAD in the state
directory and the patch is that worktree's `git diff`, new files included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pimainteno import db as dbm
from pimainteno import git
from pimainteno.app import App
from pimainteno.config import Project
from pimainteno.errors import InputError, ToolError
from pimainteno.procs import run_command
from pimainteno.providers.base import accounted, get_provider, patch_prompt

log = logging.getLogger("pimainteno")


@dataclass
class Proposal:
    id: int
    project: str
    diff: str
    files: list[str]
    added: int
    removed: int
    base_head: str


def checked_key(project: Project) -> str:
    return f"propose.{project.name}.checked_head"


def should_ask(app: App, project: Project, head: str, *, reason: str | None, failure_id: int | None,
               feedback: str | None) -> str | None:  # fmt: skip
    """Why a model should be asked now, or None (then no model call is made)."""
    if reason:
        return "asked: " + reason
    if failure_id is not None:
        return f"failure #{failure_id}"
    if feedback:
        return "the previous proposal failed the tests"
    if project.propose_when == "always":
        return "propose_when = always"
    row = app.db.execute("SELECT value FROM status WHERE key = ?", [checked_key(project)]).fetchone()
    if row and row[0] == head:
        return None
    return "HEAD moved since the last check" if row else "first check of this project"


def propose(
    app: App,
    project: Project,
    *,
    reason: str | None = None,
    failure_id: int | None = None,
    feedback: str | None = None,
    run_id: int | None = None,
    head: str | None = None,
) -> Proposal | None:
    """Ask the provider for a change; None when there is nothing to propose (said on stderr)."""
    head = head or git.head(project.path)
    why = should_ask(app, project, head, reason=reason, failure_id=failure_id, feedback=feedback)
    if why is None:
        log.info(
            "%s: nothing to propose: HEAD %s unchanged since the last check and no failure", project.name, head[:12]
        )
        return None
    journal = _failure_journal(app, failure_id)
    from pimainteno.commands.summarize import summarize

    summary, _ = summarize(app, project, run_id=run_id, head=head)
    name = app.config.provider_for(project)
    provider = get_provider(name, app.config.llm, project.command)
    log.info("%s: proposing with %s (%s)", project.name, name, why)
    with git.temporary_worktree(project.path, app.state_dir, project.name) as worktree:
        failing = None
        if project.test and failure_id is None and not feedback:
            result = run_command(project.test, worktree, project.test_timeout)
            git.reset_worktree(worktree)
            if not result.ok:
                failing = result.output or f"exit status {result.exit_status}"
        goal = (
            "fixes the service failure below" if journal
            else "makes the failing tests below pass" if failing or feedback
            else "improves the project (a bug, a lint problem, a fragile spot)"
        )  # fmt: skip
        prompt = patch_prompt(
            project,
            [
                ("Why now", reason),
                ("Service failure (journal)", journal),
                ("Failing tests", failing),
                ("The previous proposal failed the tests with", feedback),
                ("Project summary", summary),
            ],
            goal,
        )
        with accounted(app.db, name, "patch", project.name, run_id) as box:
            call = box["call"] = provider.propose(project, worktree, prompt)
            call.prompt_bytes = len(prompt.encode())
        if not call.ok:
            raise ToolError(f"{name} failed to propose a patch for {project.name}: {call.error}")
        diff = git.worktree_diff(worktree)
        numstat = git.git(worktree, "diff", "--cached", "--numstat", "HEAD")
    dbm.set_status(app.db, checked_key(project), head)
    if not diff.strip():
        log.info("%s: nothing to propose: the %s provider changed nothing", project.name, name)
        return None
    files, added, removed = [], 0, 0
    for line in numstat.splitlines():
        a, r, path = line.split("\t", 2)
        files.append(path)
        added += int(a) if a.isdigit() else 0
        removed += int(r) if r.isdigit() else 0
    proposal_id = dbm.insert(
        app.db,
        "proposals",
        {
            "project": project.name, "run_id": run_id, "created_at": dbm.now(), "updated_at": dbm.now(),
            "base_head": head, "provider": name, "reason": reason or why, "failure_id": failure_id,
            "status": "proposed", "files": files, "added": added, "removed": removed, "diff": diff,
        },
    )  # fmt: skip
    log.info("%s: proposal #%d: %d files, +%d -%d", project.name, proposal_id, len(files), added, removed)
    return Proposal(proposal_id, project.name, diff, files, added, removed, head)


def _failure_journal(app: App, failure_id: int | None) -> str | None:
    if failure_id is None:
        return None
    row = app.db.execute(
        "SELECT unit, result, exit_status, journal FROM failures WHERE id = ?", [failure_id]
    ).fetchone()
    if not row:
        raise InputError(f"no failure #{failure_id} in the database; see `pimainteno status` for recent failures")
    unit, result, status, journal = row
    return f"Unit {unit} failed (result {result}, exit status {status}).\n\n{journal or '(no journal excerpt)'}"


def load_proposal(app: App, proposal_id: int) -> tuple[Proposal, str]:
    """A stored proposal and its status."""
    import json

    row = app.db.execute(
        "SELECT id, project, diff, files, added, removed, base_head, status FROM proposals WHERE id = ?",
        [proposal_id],
    ).fetchone()
    if not row:
        raise InputError(f"no proposal #{proposal_id}; see the proposals table on the dashboard")
    return Proposal(row[0], row[1], row[2], json.loads(row[3] or "[]"), row[4], row[5], row[6]), row[7]
