"""The one timestamp, the secret scrubber, the key/value `status` table and the `projects` mirror."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite_utils

    from pimainteno.config import Config, Project

REDACTED = "[redacted]"
_MIN_SECRET = 4  # shorter values would redact ordinary words
_secrets: set[str] = set()


def now(seconds_ago: float = 0.0) -> str:
    """UTC ISO-8601 with milliseconds and a Z (sorts as text): the only timestamp format stored.

    ``seconds_ago`` gives the stamp of that long ago, for "since" queries.
    """
    when = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- secrets ---------------------------------------------------------------------------------------


def secrets_of(config: Config) -> set[str]:
    """Every secret the configuration knows: the [llm] api key (and the variable it names), the [web] token."""
    found = {config.llm.api_key, config.web.token, os.environ.get(config.llm.api_key_env or "")}
    return {s for s in found if s and len(s) >= _MIN_SECRET}


def remember_secrets(values: set[str] | Any) -> None:
    """Add values that scrub() must redact from now on (called whenever a configuration is loaded)."""
    if not isinstance(values, set):
        values = secrets_of(values)
    _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET)


def scrub(text: Any) -> Any:
    """``text`` with every known secret replaced by ``[redacted]``; anything but a str is returned as is."""
    if not isinstance(text, str) or not _secrets:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):  # a longer secret may contain a shorter one
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def clean(row: dict[str, Any]) -> dict[str, Any]:
    """A row ready to store: secrets scrubbed from its texts (and from texts inside lists of dicts)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list):
            value = [{k: scrub(v) for k, v in x.items()} if isinstance(x, dict) else scrub(x) for x in value]
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        out[key] = scrub(value)
    return out


def insert(db: sqlite_utils.Database, table: str, row: dict[str, Any]) -> int:
    """Insert one scrubbed row; its id."""
    last_pk = db.table(table).insert(clean(row)).last_pk
    assert last_pk is not None
    return int(last_pk)


def update(db: sqlite_utils.Database, table: str, row_id: int, values: dict[str, Any]) -> None:
    """Update one row by its `id` with scrubbed values, lists and dicts as JSON (as sqlite-utils stores them).

    One UPDATE statement: sqlite-utils' Table.update first reads the schema and the row (seven queries),
    which a run's step-by-step `runs` updates paid for on every step."""
    row = clean(values)
    for name in (table, *row):
        if '"' in name:
            raise ValueError(f"not a column or table name: {name!r}")
    if row:
        sets = ", ".join(f'"{k}" = ?' for k in row)
        done = db.conn.execute(f'UPDATE "{table}" SET {sets} WHERE id = ?', [*map(_jsonify, row.values()), row_id])
    else:  # nothing to change: still an error for a missing row
        done = db.conn.execute(f'SELECT 1 FROM "{table}" WHERE id = ?', [row_id])
    if (done.rowcount if row else len(done.fetchall())) != 1:
        from sqlite_utils.db import NotFoundError

        raise NotFoundError(f"no {table} row with id {row_id}")


def _jsonify(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        import json

        return json.dumps(value, default=repr, ensure_ascii=False)
    return value


def rows(db: sqlite_utils.Database, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a read query as dicts (for the reports that join or aggregate)."""
    return list(db.query(sql, params))


# --- status: key/value heartbeats and markers -------------------------------------------------------


def set_status(db: sqlite_utils.Database, key: str, value: str) -> None:
    db.table("status").upsert({"key": key, "value": scrub(value), "updated_at": now()}, pk="key")


def status_value(db: sqlite_utils.Database, key: str) -> str | None:
    found = list(db.table("status").rows_where("key = ?", [key], select="value", limit=1))
    return found[0]["value"] if found else None


def delete_status(db: sqlite_utils.Database, key: str) -> None:
    db.table("status").delete_where("key = ?", [key])


def get_status(db: sqlite_utils.Database) -> dict[str, dict[str, str]]:
    return {
        r["key"]: {"value": r["value"], "updated_at": r["updated_at"]}
        for r in db.query("SELECT key, value, updated_at FROM status ORDER BY key")
    }


# --- projects: the configuration, mirrored for the dashboard ----------------------------------------


def proof_of(p: Project) -> str:
    """How the project's patches are proven, as the dashboard's `projects.proof` shows it."""
    if not p.test:
        return "none: no test command, runs push unproven" if p.unproven == "push" else (
            "none: no test command, proposals wait for a person"
        )  # fmt: skip
    if not p.sandbox.enabled:
        return "UNSAFE: tests run unsandboxed (sandbox = false)"
    return "tests in the sandbox" + (", with network" if p.sandbox.network else "")


def sync_projects(db: sqlite_utils.Database, projects: Iterable[Project], default_provider: str) -> None:
    """Mirror the configured projects into `projects`; projects no longer configured are removed."""
    stamp = now()
    table = db.table("projects")
    projects = list(projects)
    names = [p.name for p in projects]
    wanted = {
        p.name: {"name": p.name, "path": str(p.path), "unit": p.unit, "remote": p.remote, "branch": p.branch,
                 "mode": p.mode, "provider": p.provider or default_provider, "proof": proof_of(p)}
        for p in projects
    }  # fmt: skip
    have = {r["name"]: {k: v for k, v in r.items() if k != "updated_at"} for r in table.rows}
    if have == wanted:
        return  # the common case: no write lock taken just to start a command
    from pimainteno.db import transaction

    with transaction(db):
        if wanted:
            table.upsert_all([{**row, "updated_at": stamp} for row in wanted.values()], pk="name")
        if names:
            table.delete_where(f"name NOT IN ({', '.join('?' * len(names))})", names)
        else:
            table.delete_where()
