"""Failures kept safe while the database cannot take them: `watch` must outlive a locked, full or
replaced database without losing a failure.

`Keeper.add()` puts a failure in a bounded in-memory buffer and records what it can at once; when
SQLite says the database is locked, full or failing (any `sqlite3.Error` or `OSError`), the rest
stay buffered and are retried with a backoff (0.5 s doubling to 30 s) from `flush()`, which the
watch calls on every heartbeat. Before recording, the database file's inode is checked: a file
deleted or replaced under the watch is reopened (recreated and migrated when missing), so nothing
is written into an unlinked file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from pimainteno.errors import DatabaseUnavailable, PimaintenoError

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.failures import Recorded
    from pimainteno.systemd import FailureEvent

log = logging.getLogger("pimainteno")

TRANSIENT = (sqlite3.Error, OSError)  # locked, disk full, I/O error, a file that went away
BUFFER = 1000  # failures kept while the database is unavailable (a crash loop coalesces anyway)
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


class Keeper:
    def __init__(self, app: App, record: Callable[[FailureEvent], Recorded]) -> None:
        self.app, self.record = app, record
        self.pending: deque[FailureEvent] = deque(maxlen=BUFFER)
        self.delay, self.retry_at, self.troubled = 0.0, 0.0, False
        app.db  # noqa: B018 - opened (created) first: the file whose identity is watched
        self.identity = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.app.database_path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def check_file(self) -> None:
        """Reopen the database when its file was deleted or replaced since it was opened."""
        now = self._identity()
        if now is not None and now == self.identity:
            return
        from pimainteno import db

        log.warning("the database %s was %s; reopening it", self.app.database_path,
                    "deleted" if now is None else "replaced")  # fmt: skip
        old = self.app.__dict__.pop("db", None)
        if old is not None:
            with contextlib.suppress(sqlite3.Error):
                old.conn.close()
        self.app.__dict__["db"] = db.reopen(self.app.database_path)  # DatabaseUnavailable (transient) if it cannot
        self.identity = self._identity()

    def add(self, event: FailureEvent) -> list[Recorded]:
        if len(self.pending) == self.pending.maxlen:
            log.error("%d failures wait for the database; dropping the oldest", len(self.pending))
        self.pending.append(event)
        self.retry_at = 0.0  # a new failure: try now
        return self.flush()

    def flush(self) -> list[Recorded]:
        """Record what is buffered, oldest first, until the database refuses; what was recorded."""
        done: list[Recorded] = []
        if not self.pending or time.monotonic() < self.retry_at:
            return done
        while self.pending:
            event = self.pending[0]
            try:
                self.check_file()
                recorded = self.record(event)
            except (*TRANSIENT, DatabaseUnavailable) as e:
                self._trouble(e)
                return done
            except PimaintenoError as e:
                log.error("%s failed, but recording it failed: %s", event.unit, e)
            else:
                done.append(recorded)
            self.pending.popleft()
        if self.troubled:
            log.warning("the database takes failures again")
        self.delay, self.troubled = 0.0, False
        return done

    def _trouble(self, e: BaseException) -> None:
        self.delay = min(max(self.delay * 2, BACKOFF_FIRST), BACKOFF_MAX)
        self.retry_at = time.monotonic() + self.delay
        if not self.troubled:
            log.warning("cannot record failures now (%s); %d kept, retrying", e, len(self.pending))
        self.troubled = True
