"""`pimainteno enqueue PROJECT`: drop a trigger in the queue for the drain to run.

Fast and lock-free: it reads the configuration and writes one file; it never opens the database.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pimainteno import queue
from pimainteno.app import App
from pimainteno.errors import InputError

log = logging.getLogger("pimainteno")


def enqueue(
    app: App,
    project: str,
    *,
    kind: str | None = None,
    source: str = "cli",
    reason: str | None = None,
    failure_id: int | None = None,
    proposal_id: int | None = None,
) -> tuple[Path, bool, str]:
    """Queue a trigger for a configured project; returns (file, merged, kind).

    Without a kind, --failure means a heal and --proposal an apply.
    """
    kind = kind or ("heal" if failure_id is not None else "apply" if proposal_id is not None else "run")
    if failure_id is not None and kind != "heal":
        raise InputError(f"--failure goes with --kind heal, not {kind}")
    if proposal_id is not None and kind not in ("apply", "reject"):
        raise InputError(f"--proposal goes with --kind apply or reject, not {kind}")
    name = app.config.project(project).name
    path, merged = queue.enqueue(
        app.config.queue_dir, name, kind=kind, source=source, reason=reason,
        failure_id=failure_id, proposal_id=proposal_id,
    )  # fmt: skip
    if merged:
        log.info("%s: merged into the %s already queued (%s)", name, kind, path)
    else:
        log.info("%s: queued %s %s (%s)", name, "an" if kind[0] in "aeiou" else "a", kind, path)
    return path, merged, kind
