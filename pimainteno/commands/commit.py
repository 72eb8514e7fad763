"""`pimainteno commit PROJECT`: commit exactly the applied patch, with a model-written message."""

from __future__ import annotations

from pimainteno import pipeline
from pimainteno.app import App
from pimainteno.config import Project
from pimainteno.pipeline import Committed


def commit(app: App, project: Project, *, message: str | None = None) -> Committed:
    return pipeline.commit_applied(app, project, message=message)
