"""`notifications`: one row per notification attempt (the target's scheme only, never its URL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pimainteno.records.base import insert, now

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
