"""`watch`'s failure buffer against a real SQLite that is locked, and a database file deleted under it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pimainteno.app import App
from pimainteno.failures import record_failure
from pimainteno.keeper import Keeper
from pimainteno.systemd import FailureEvent
from tests.conftest import write_config


def event(invocation: str) -> FailureEvent:
    return FailureEvent(unit="pm-x.service", active_state="failed", sub_state="failed", result="exit-code",
                        exit_code="exited", exit_status=1, invocation_id=invocation, detected_at=0.0,
                        detected_wall="")  # fmt: skip


def keeper(tmp_path: Path) -> tuple[App, Keeper]:
    write_config(tmp_path, '[systemd_monitor]\nunits = ["pm-x.service"]\ncoalesce = 0\n')
    app = App()
    return app, Keeper(app, lambda e: record_failure(app, e, source="watch"))


def test_failures_wait_while_the_database_is_locked_and_are_recorded_after(tmp_path: Path) -> None:
    app, keep = keeper(tmp_path)
    app.db.execute("PRAGMA busy_timeout = 100")  # give up in 0.1 s instead of 15: the same error, sooner
    other = sqlite3.connect(app.database_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    assert keep.add(event("a" * 32)) == [] and keep.add(event("b" * 32)) == []
    assert len(keep.pending) == 2 and keep.troubled
    other.execute("ROLLBACK")
    other.close()

    keep.retry_at = 0.0  # the backoff has passed
    done = keep.flush()
    assert [r.unit for r in done] == ["pm-x.service", "pm-x.service"] and not keep.pending
    assert app.db.execute("SELECT invocation_id FROM failures ORDER BY id").fetchall() == [("a" * 32,), ("b" * 32,)]


def test_a_deleted_database_is_recreated_not_written_unlinked(tmp_path: Path) -> None:
    app, keep = keeper(tmp_path)
    path = app.database_path
    assert keep.add(event("a" * 32))
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    (recorded,) = keep.add(event("b" * 32))
    assert path.exists()
    assert app.db.execute("SELECT invocation_id FROM failures").fetchall() == [("b" * 32,)]
    assert recorded.failure_id == 1  # the first row of the new file
