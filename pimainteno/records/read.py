"""Read-only queries through the stdlib sqlite3 module, for commands that only look (`status`).

Opening the database through `db.open_db` costs sqlite-utils' import and a migration check; a
command that only reads a few rows connects here instead. These functions take a plain
`sqlite3.Connection` (a sqlite-utils Database's `.conn` is one too), so a caller that finds the file
older than the code (`sqlite3.OperationalError`: no such table or column) can retry on `app.db.conn`,
which migrates it.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

BUSY_TIMEOUT_S = 15.0  # as db.BUSY_TIMEOUT_MS: wait out a writer rather than fail


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to an existing database for reading: no migration, no write, no sqlite-utils."""
    return sqlite3.connect(os.fspath(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)


def rows(conn: sqlite3.Connection, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a read query as dicts."""
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def get_status(conn: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """The key/value `status` table (heartbeats and markers), as records.get_status returns it."""
    return {
        r["key"]: {"value": r["value"], "updated_at": r["updated_at"]}
        for r in rows(conn, "SELECT key, value, updated_at FROM status ORDER BY key")
    }
