"""The first two steps: a summary cached by HEAD, and a patch made in an isolated worktree.

A heal (a run for a recorded failure) makes one model call: the patch call, with the failure, the
unit's journal and the last summary as context; the call's structured answer also gives the
commit subject (stored on the proposal), and the summary is refreshed by the next scheduled run.

The project's working tree is never touched: the provider edits a worktree at HEAD in the state
directory and the patch is that worktree's `git diff`, new files included.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pimainteno import git, records
from pimainteno.errors import SEE_DOCTOR, InputError, ToolError
from pimainteno.providers.base import accounted, get_provider, patch_prompt
from pimainteno.words import plural

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
            write_summary_file(app, project, cached)
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
    records.add_summary(app.db, project.name, head, name, text, call.llm_call_id)
    write_summary_file(app, project, text)
    return text, False


# The first line of every summary file pimainteno writes: a file without it is the user's, never replaced.
SUMMARY_MARKER = (
    "<!-- written by pimainteno; replaced on every summary. Delete this line to keep the file as yours. -->"
)


def write_summary_file(app: App, project: Project, text: str) -> Path | None:
    """Write the summary file where it is pimainteno's to write; where it was written, or None when disabled.

    The project's file is written only when absent or pimainteno's own (its first line is
    SUMMARY_MARKER) and untracked; only a file pimainteno created is kept out of `git status`. A user's
    file is never replaced or hidden: the summary then goes to the state directory, said in one line.
    """
    if not project.summary_file:
        return None
    target = project.path / project.summary_file
    content = f"{SUMMARY_MARKER}\n{text.rstrip()}\n"
    why_not = _not_ours(project, target, text)
    if why_not is None and target.is_file() and target.read_text(errors="replace") == content:
        return target  # already current (the common case on a cached summary): no git call
    if why_not is None and git.git(project.path, "ls-files", "--", project.summary_file).strip():
        why_not = "git tracks it"
    if why_not is None:
        try:
            _write_atomically(target, content)
        except FileExistsError:
            why_not = "appeared while the summary was written"
        else:
            git.exclude_locally(project.path, project.summary_file)
            return target
    kept = app.state_subdir("summaries") / f"{project.name}.md"
    _write_atomically(kept, content)
    log.warning("%s: %s %s; the summary is in %s instead", project.name, target, why_not, kept)
    return kept


def _not_ours(project: Project, target: Path, text: str) -> str | None:
    """Why ``target`` is not pimainteno's to write (None: it is absent or pimainteno's own)."""
    root = project.path.resolve()
    if not target.parent.resolve().is_relative_to(root):
        return "is outside the project (through a symbolic link)"
    if target.is_symlink() or (target.exists() and not target.is_file()):
        return "is not a regular file"
    if not target.exists():
        return None
    with target.open("rb") as f:
        first = f.readline(len(SUMMARY_MARKER) + 2)
    if first.rstrip(b"\n") == SUMMARY_MARKER.encode():
        return None
    legacy = (text.rstrip() + "\n").encode()  # what pimainteno wrote before the marker existed
    if target.stat().st_size == len(legacy) and target.read_bytes() == legacy:
        return None
    return "is not pimainteno's (its first line is not pimainteno's marker)"


def _write_atomically(target: Path, content: str) -> None:
    """Replace pimainteno's own file, or create one without ever replacing a file that appeared meanwhile."""
    target.parent.mkdir(parents=True, exist_ok=True)
    ours = target.exists()
    fd, tmp = tempfile.mkstemp(prefix=".pimainteno-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        if ours:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # FileExistsError rather than replacing a file created since the check
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


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
        log.info("%s: nothing to propose: HEAD %s unchanged since the last check and no failure "
                 "(--reason TEXT asks anyway)", project.name, head[:12])  # fmt: skip
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
            # The model's worktree is HEAD as committed, but its tests run like a proof: in the sandbox.
            from pimainteno.pipeline.validate import run_tests, sandbox_problem

            problem = sandbox_problem(project)
            if problem:
                raise ToolError(problem)
            result = run_tests(project, worktree)
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
            see = f"; {SEE_DOCTOR}" if call.outcome == "error" else ""  # it did not start: a set-up problem
            raise ToolError(f"{name} failed to propose a patch for {project.name}: {call.error}{see}")
        diff = git.worktree_diff(worktree)
        numstat = git.git(worktree, "diff", "--cached", "--numstat", "HEAD")
    records.set_status(app.db, checked_key(project), head)
    if not diff.strip():
        more = ""
        if call.exit_status not in (None, 0) and name == "command":  # problems it cannot fix, or a fixer that failed
            said = next((line.strip() for line in reversed(call.text.splitlines()) if line.strip()), "")
            why = said[:200] or "problems it cannot fix may remain; run it by hand to see"
            more = f" (it exited {call.exit_status}: {why})"
            if call.llm_call_id is not None:  # what it said, on its llm_calls row (the dashboard shows it)
                records.update(app.db, "llm_calls", call.llm_call_id,
                               {"error": f"exited {call.exit_status} and changed nothing: {call.text[-2000:]}"})  # fmt: skip
        log.info("%s: nothing to propose: the %s provider changed nothing%s", project.name, name, more)
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
    log.info("%s: proposal #%d: %s, +%d -%d", project.name, proposal.id, plural(len(files), "file"), added, removed)
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
