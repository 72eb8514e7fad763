"""`pimainteno push PROJECT`: fast-forward push to the configured remote and branch, never forced."""

from __future__ import annotations

from pimainteno import pipeline
from pimainteno.app import App
from pimainteno.config import Project


def push(app: App, project: Project) -> str:
    """Push HEAD; the ref pushed to. A refusal is recorded on the unpushed commits and raised."""
    return pipeline.push(app, project)
