"""`pimainteno notify --test`: send one notification to every configured target and say how each went.

The test is sent whatever `[notify] events` lists and is never held back by `max_per_hour`; it is
recorded in the `notifications` table like every other (event `test`, the target's scheme only).
"""

from __future__ import annotations

from pimainteno import notify as notify_mod
from pimainteno import records
from pimainteno.app import App
from pimainteno.errors import InputError


def send_test(app: App) -> list[notify_mod.Sent]:
    """One `test` notification to every target; each target's outcome (sent, failed, timeout)."""
    cfg = app.config.notify
    if not cfg.urls:
        raise InputError(f"no notification targets: add apprise URLs to [notify] urls in {app.config.path}")
    body = "pimainteno can reach you here. Events sent: " + (", ".join(cfg.events) or "none")
    return notify_mod.notify(app.config, app.db, "test", project=None, body=body, force=True,
                             link=app.config.web.url, scrub=records.scrub)  # fmt: skip


def line(sent: notify_mod.Sent) -> str:
    return f"{sent.target}://: {sent.outcome}" + (f" — {sent.error}" if sent.error else "")
