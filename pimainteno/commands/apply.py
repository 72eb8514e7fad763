"""`pimainteno apply`: validate a patch (policy + `git apply --check`) and apply it to the working tree.

Touches nothing unless every check passed; `git apply` itself is all-or-nothing.
"""

from __future__ import annotations

from pimainteno import pipeline
from pimainteno.app import App
from pimainteno.pipeline import Applied


def apply(app: App, text: str | None, *, project_name: str | None = None, proposal_id: int | None = None,
          check_only: bool = False) -> Applied:  # fmt: skip
    return pipeline.apply_patch(app, text, project_name=project_name, proposal_id=proposal_id, check_only=check_only)
