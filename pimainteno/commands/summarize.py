"""`pimainteno summarize PROJECT`: a summary cached by HEAD, stored, printed and written to a file."""

from __future__ import annotations

from pimainteno import pipeline
from pimainteno.app import App
from pimainteno.config import Project


def summarize(app: App, project: Project, *, force: bool = False) -> tuple[str, bool]:
    """The summary and whether it came from the cache."""
    return pipeline.summarize(app, project, force=force)
