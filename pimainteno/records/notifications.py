"""`notifications`: one row per notification attempt (the target's scheme only, never its URL).

Also the two per-run facts the one-call heal needs: the commit subject the patch call answered
with (on its proposal) and the project's last summary whatever HEAD it was made at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pimainteno.records.base import insert, now, update

if TYPE_CHECKING:
    import sqlite_utils


def add_notification(db: sqlite_utils.Database, *, event: str, project: str | None, target: str, outcome: str,
                     error: str | None, title: str) -> int:  # fmt: skip
    """One attempt (sent, failed, timeout, held); the error is scrubbed like every stored text."""
    return insert(db, "notifications", {
        "created_at": now(), "event": event, "project": project, "target": target, "outcome": outcome,
        "error": error, "title": title,
    })  # fmt: skip


def notifications_sent_since(db: sqlite_utils.Database, since: str) -> int:
    return int(db.table("notifications").count_where("outcome = 'sent' AND created_at >= ?", [since]))


def notifications_held_since_last_sent(db: sqlite_utils.Database, default_since: str) -> int:
    """How many were held back since the last one sent (or since ``default_since`` when none was)."""
    found = list(db.query("SELECT max(created_at) AS at FROM notifications WHERE outcome = 'sent'"))
    since = found[0]["at"] if found and found[0]["at"] else default_since
    return int(db.table("notifications").count_where("outcome = 'held' AND created_at >= ?", [since]))


def set_commit_subject(db: sqlite_utils.Database, proposal_id: int, subject: str | None) -> None:
    """The subject the patch call gave with its diff (None: none or malformed; the commit asks separately)."""
    update(db, "proposals", proposal_id, {"commit_subject": subject})


def commit_subject_of(db: sqlite_utils.Database, proposal_id: int) -> str | None:
    found = list(db.table("proposals").rows_where("id = ?", [proposal_id], select="commit_subject", limit=1))
    return found[0]["commit_subject"] if found else None


def last_summary(db: sqlite_utils.Database, project: str) -> str | None:
    """The project's latest summary at any HEAD: a heal's context without a model call to refresh it."""
    found = list(db.table("summaries").rows_where("project = ?", [project], order_by="id DESC", limit=1,
                                                  select="text"))  # fmt: skip
    return found[0]["text"] if found else None


def proposal_row(db: sqlite_utils.Database, proposal_id: int) -> dict[str, Any] | None:
    found = list(db.table("proposals").rows_where("id = ?", [proposal_id], limit=1,
                                                  select="id, status, status_reason, commit_subject, files"))  # fmt: skip
    return found[0] if found else None
