"""`commits`: pimainteno's commits and reverts, whether each is pushed, and which revert undid which."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pimainteno.records.base import insert, now

if TYPE_CHECKING:
    import sqlite_utils


def add_commit(db: sqlite_utils.Database, *, project: str, sha: str, message: str, author: str,
               proposal_id: int | None, run_id: int | None, kind: str = "patch") -> int:  # fmt: skip
    return insert(db, "commits", {
        "project": project, "run_id": run_id, "proposal_id": proposal_id, "sha": sha, "kind": kind,
        "message": message, "author": author, "created_at": now(),
    })  # fmt: skip


def commit_row(db: sqlite_utils.Database, project: str, sha: str) -> dict[str, Any] | None:
    found = list(db.table("commits").rows_where("project = ? AND sha = ?", [project, sha], limit=1))
    return found[0] if found else None


def forget_commit(db: sqlite_utils.Database, project: str, sha: str) -> None:
    """A recorded commit that never landed: its row goes, and any `reverted_by` pointing at it."""
    db.table("commits").delete_where("project = ? AND sha = ?", [project, sha])
    for row in db.table("commits").rows_where("project = ? AND reverted_by = ?", [project, sha], select="id"):
        db.table("commits").update(row["id"], {"reverted_by": None})


def mark_reverted(db: sqlite_utils.Database, project: str, sha: str, revert_sha: str) -> None:
    for row in db.table("commits").rows_where("project = ? AND sha = ?", [project, sha], select="id"):
        db.table("commits").update(row["id"], {"reverted_by": revert_sha})


def unpushed(db: sqlite_utils.Database, project: str) -> list[dict[str, Any]]:
    return list(db.table("commits").rows_where("project = ? AND pushed_at IS NULL", [project], order_by="id"))


def mark_pushed(db: sqlite_utils.Database, project: str, push_ref: str) -> list[dict[str, Any]]:
    """Every unpushed commit of the project is now on the remote; returns those rows."""
    rows = unpushed(db, project)
    stamp = now()
    for row in rows:
        db.table("commits").update(row["id"], {"pushed_at": stamp, "push_ref": push_ref, "push_error": None})
    return rows


def note_push_error(db: sqlite_utils.Database, project: str, error: str) -> None:
    from pimainteno.records.base import scrub

    for row in unpushed(db, project):
        db.table("commits").update(row["id"], {"push_error": scrub(error)})


def replace_sha(db: sqlite_utils.Database, project: str, old: str, new: str) -> None:
    """A commit replayed elsewhere (on a remote that moved on): its rows and the reverts naming it follow."""
    db.execute("UPDATE commits SET sha = ? WHERE project = ? AND sha = ?", [new, project, old])
    db.execute("UPDATE commits SET reverted_by = ? WHERE project = ? AND reverted_by = ?", [new, project, old])
