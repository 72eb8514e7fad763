"""One run's bookkeeping: its `runs` row and steps, the per-project lock, and cleaning up after a killed run."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from pimainteno import git, records

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project

log = logging.getLogger("pimainteno")


@dataclass
class Recorder:
    """The `runs` row of one run, updated after every step so the dashboard shows progress."""

    app: App
    run_id: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    proposal_id: int | None = None  # the proposal this run is about, once there is one

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Record step ``name``; the body may set the entry's ``outcome`` and ``detail``."""
        entry: dict[str, Any] = {"step": name, "outcome": "ok"}
        start = time.monotonic()
        records.update_run(self.app.db, self.run_id, step=name)
        try:
            yield entry
        except BaseException as e:
            if entry["outcome"] == "ok":  # the body may already have said how it ended (e.g. rejected)
                entry["outcome"] = "failed"
            entry.setdefault("detail", str(e) or type(e).__name__)
            raise
        finally:
            entry["seconds"] = round(time.monotonic() - start, 3)
            self.steps.append(entry)
            records.update_run(self.app.db, self.run_id, steps=self.steps)


@contextmanager
def project_lock(app: App, project: Project) -> Iterator[bool]:
    """One run per project at a time; the kernel drops the lock when a killed process dies."""
    path = app.state_subdir("locks") / f"{project.name}.lock"
    f: IO[str] = open(path, "a")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        f.close()


def recover(app: App, project: Project) -> None:
    """Clean up what a killed run left: its `running` row, a commit recorded but never brought in, worktrees.

    Call with the project lock held.
    """
    db = app.db
    for run_id, pid in records.running_runs(db, project.name):
        if pid != os.getpid():
            log.warning("%s: run #%d was interrupted (its process is gone)", project.name, run_id)
            records.update_run(db, run_id, status="interrupted", finished_at=records.now())
    for row in records.unpushed(db, project.name):
        if not git.is_ancestor(project.path, row["sha"]):  # an interrupted run recorded it but never brought it in
            records.forget_commit(db, project.name, row["sha"])
            if row["proposal_id"] is not None:
                try:
                    records.transition(db, row["proposal_id"], records.ProposalStatus.FAILED, actor="pimainteno",
                                       reason="the run was interrupted before the commit landed")  # fmt: skip
                except records.IllegalTransition as e:  # already settled by someone else: keep what it says
                    log.info("%s: %s", project.name, e)
    git.prune_stale_worktrees(project.path, app.state_dir)
