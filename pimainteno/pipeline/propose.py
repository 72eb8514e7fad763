"""The first two steps: a summary cached by HEAD, and a patch made in an isolated worktree.

A heal (a run for a recorded failure) makes one model call: the patch call, with the failure, the
unit's journal and the last summary as context; the call's structured answer also gives the
commit subject (stored on the proposal), and the summary is refreshed by the next scheduled run.

The project's working tree is never touched: the provider edits a worktree at HEAD in the state
directory and the patch is that worktree's `git diff`, new files included.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING

from pimainteno import git, records
from pimainteno.errors import InputError, ToolError
from pimainteno.procs import run_command
from pimainteno.providers.base import accounted, get_provider, patch_prompt

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project

log = logging.getLogger("pimainteno")


def summarize(
    app: App, project: Project, *, force: bool = False, run_id: int | None = None, head: str | None = None
) -> tuple[str, bool]:
    """The project's summary at HEAD and whether it came from the cache (no provider call)."""
    head = head or git.head(project.path)
    if not force:
        cached = records.cached_summary(app.db, project.name, head)
        if cached is not None:
            log.debug("%s: summary cached for %s", project.name, head[:12])
            write_summary_file(project, cached)
            return cached, True
    name = app.config.provider_for(project)
    provider = get_provider(name, app.config.llm, project.command)
    log.info("%s: summarizing at %s with %s", project.name, head[:12], name)
    with (
        git.temporary_worktree(project.path, app.state_dir, project.name) as worktree,
        accounted(app.db, name, "summary", project.name, run_id) as box,
    ):
        call = box["call"] = provider.summarize(project, worktree)
    text = call.text.strip()
    if not call.ok or not text:
        raise ToolError(f"{name} could not summarize {project.name}: {call.error or 'the summary was empty'}")
    call_id = records.last_llm_call(app.db, project.name, "summary", run_id)
    records.add_summary(app.db, project.name, head, name, text, call_id)
    write_summary_file(project, text)
    return text, False


def write_summary_file(project: Project, text: str) -> None:
    """Write the summary file, kept out of `git status`; never overwrite a file git tracks."""
    if not project.summary_file:
        return
    target = project.path / project.summary_file
    content = text.rstrip() + "\n"
    if target.is_file() and target.read_text(errors="replace") == content:
        return  # already current (the common case on a cached summary): no git call
    tracked = git.git(project.path, "ls-files", "--", project.summary_file).strip()
    if tracked:
        log.warning("%s: %s is tracked by git; not overwriting it with the summary", project.name, target)
        return
    git.exclude_locally(project.path, project.summary_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pimainteno-", dir=target.parent)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


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
    checked = records.status_value(app.db, checked_key(project))
    if checked == head:
        return None
    return "HEAD moved since the last check" if checked else "first check of this project"


def propose(
    app: App,
    project: Project,
    *,
    reason: str | None = None,
    failure_id: int | None = None,
    feedback: str | None = None,
    run_id: int | None = None,
    head: str | None = None,
) -> records.Proposal | None:
    """Ask the provider for a change; None when there is nothing to propose (said on stderr)."""
    head = head or git.head(project.path)
    why = should_ask(app, project, head, reason=reason, failure_id=failure_id, feedback=feedback)
    if why is None:
        log.info(
            "%s: nothing to propose: HEAD %s unchanged since the last check and no failure", project.name, head[:12]
        )
        return None
    journal = failure_journal(app, failure_id)
    summary = (
        heal_summary(app, project) if failure_id is not None else summarize(app, project, run_id=run_id, head=head)[0]
    )
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
    records.set_status(app.db, checked_key(project), head)
    if not diff.strip():
        log.info("%s: nothing to propose: the %s provider changed nothing", project.name, name)
        return None
    files, added, removed = [], 0, 0
    for line in numstat.splitlines():
        a, r, path = line.split("\t", 2)
        files.append(path)
        added += int(a) if a.isdigit() else 0
        removed += int(r) if r.isdigit() else 0
    proposal = records.add_proposal(
        app.db, project=project.name, diff=diff, base_head=head, files=files, added=added, removed=removed,
        fingerprint=git.patch_id(project.path, diff), provider=name, reason=reason or why, failure_id=failure_id,
        run_id=run_id,
    )  # fmt: skip
    records.set_commit_subject(app.db, proposal.id, call.commit_subject)
    log.info("%s: proposal #%d: %d files, +%d -%d", project.name, proposal.id, len(files), added, removed)
    return proposal


def heal_summary(app: App, project: Project) -> str:
    """A heal's summary: the last one made, at whatever HEAD; no model call on the way to a fix.

    The summary is refreshed by the next scheduled run (HEAD moved, so the cache misses)."""
    return records.last_summary(app.db, project.name) or "(no summary yet: work from the failure and the files)"


def failure_journal(app: App, failure_id: int | None) -> str | None:
    """The recorded failure as the model is shown it."""
    if failure_id is None:
        return None
    row = records.failure_row(app.db, failure_id)
    if not row:
        raise InputError(f"no failure #{failure_id} in the database; see `pimainteno status` for recent failures")
    what = (
        f"Unit {row['unit']} is running but failed its health probe (several times in a row)"
        if row["result"] == "probe"
        else f"Unit {row['unit']} failed (result {row['result']}, exit status {row['exit_status']})"
    )
    return f"{what}.\n\n{row['journal'] or '(no journal excerpt)'}"
