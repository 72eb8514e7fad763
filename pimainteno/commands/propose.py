"""`pimainteno propose PROJECT`: a patch made in an isolated worktree, stored and printed."""

from __future__ import annotations

from pimainteno import pipeline, records
from pimainteno.app import App
from pimainteno.config import Project


def propose(app: App, project: Project, *, reason: str | None = None,
            failure_id: int | None = None) -> records.Proposal | None:  # fmt: skip
    """The stored proposal, or None when there is nothing to propose (said on stderr)."""
    return pipeline.propose(app, project, reason=reason, failure_id=failure_id)
