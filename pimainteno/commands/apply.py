"""`pimainteno apply`: validate a patch (policy + `git apply --check`) and apply it to the working tree.

Touches nothing unless every check passed; `git apply` itself is all-or-nothing. An empty patch is
nothing to do, not an error: `propose` prints nothing when it has nothing to propose, so
`pimainteno propose app | pimainteno apply` ends in success then.
"""

from __future__ import annotations

import logging

from pimainteno import pipeline
from pimainteno.app import App
from pimainteno.pipeline import Applied

log = logging.getLogger("pimainteno")

NOTHING_TO_APPLY = (
    "nothing to apply: the patch is empty (propose had nothing to propose); "
    "to ask for a change anyway: `pimainteno propose PROJECT --reason TEXT`; "
    "to apply a stored proposal: `pimainteno apply --proposal N`"
)


def apply(app: App, text: str | None, *, project_name: str | None = None, proposal_id: int | None = None,
          check_only: bool = False) -> Applied | None:  # fmt: skip
    """What was applied, or None when the patch is empty (nothing to do, said on stderr)."""
    if proposal_id is None and text is not None and not text.strip():
        log.info(NOTHING_TO_APPLY)
        return None
    return pipeline.apply_patch(app, text, project_name=project_name, proposal_id=proposal_id, check_only=check_only)
