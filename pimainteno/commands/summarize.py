"""`pimainteno summarize PROJECT`: a summary cached by HEAD, stored, printed and written to a file."""

from __future__ import annotations

import logging
import os
import tempfile

from pimainteno import db as dbm
from pimainteno import git
from pimainteno.app import App
from pimainteno.config import Project
from pimainteno.errors import ToolError
from pimainteno.providers.base import accounted, get_provider

log = logging.getLogger("pimainteno")


def summarize(
    app: App, project: Project, *, force: bool = False, run_id: int | None = None, head: str | None = None
) -> tuple[str, bool]:
    """The project's summary at HEAD and whether it came from the cache (no provider call)."""
    head = head or git.head(project.path)
    if not force:
        row = app.db.execute(
            "SELECT text FROM summaries WHERE project = ? AND head = ? ORDER BY id DESC LIMIT 1",
            [project.name, head],
        ).fetchone()
        if row:
            log.debug("%s: summary cached for %s", project.name, head[:12])
            write_summary_file(project, row[0])
            return row[0], True
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
    dbm.insert(
        app.db,
        "summaries",
        {"project": project.name, "head": head, "created_at": dbm.now(), "provider": name, "text": text},
    )
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
