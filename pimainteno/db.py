"""The one place that opens the database: WAL, busy timeout, foreign keys, named migrations.

Tables are part of the user interface (Datasette shows them). Migrations are append-only: never
rename, reorder or edit a shipped one; add a new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from pimainteno.errors import DatabaseUnavailable

__all__ = [
    "BUSY_TIMEOUT_MS",
    "migrations",
    "open_db",
    "reopen",
    "transaction",
]

BUSY_TIMEOUT_MS = 15_000

migrations = Migrations("pimainteno")


@migrations(name="001_initial")
def _m001(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE projects (
            name TEXT PRIMARY KEY, path TEXT NOT NULL, unit TEXT, remote TEXT, branch TEXT,
            mode TEXT, provider TEXT, updated_at TEXT
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY, project TEXT NOT NULL, trigger TEXT NOT NULL,
            failure_id INTEGER, started_at TEXT NOT NULL, finished_at TEXT, duration_s REAL,
            status TEXT NOT NULL,       -- running, ok, nothing, failed, rejected, rolled_back,
                                        -- interrupted, skipped
            step TEXT,                  -- the last step reached
            steps TEXT,                 -- JSON list of {step, outcome, seconds, detail}
            proposal_id INTEGER, commit_sha TEXT, error TEXT, pid INTEGER
        );
        CREATE INDEX runs_project_started ON runs(project, started_at);
        CREATE INDEX runs_started ON runs(started_at);
        CREATE INDEX runs_status ON runs(status);
        CREATE TABLE summaries (
            id INTEGER PRIMARY KEY, project TEXT NOT NULL, head TEXT NOT NULL,
            created_at TEXT NOT NULL, provider TEXT, text TEXT NOT NULL, llm_call_id INTEGER
        );
        CREATE INDEX summaries_project_created ON summaries(project, created_at);
        CREATE TABLE proposals (
            id INTEGER PRIMARY KEY, project TEXT NOT NULL, run_id INTEGER,
            created_at TEXT NOT NULL, updated_at TEXT, base_head TEXT, provider TEXT,
            reason TEXT, failure_id INTEGER,
            status TEXT NOT NULL,       -- proposed, approved, rejected, applied, committed,
                                        -- pushed, discarded, failed
            status_reason TEXT, test_output TEXT,
            files TEXT,                 -- JSON list of paths
            added INTEGER, removed INTEGER, diff TEXT NOT NULL
        );
        CREATE INDEX proposals_project_created ON proposals(project, created_at);
        CREATE INDEX proposals_status ON proposals(status);
        CREATE TABLE commits (
            id INTEGER PRIMARY KEY, project TEXT NOT NULL, run_id INTEGER, proposal_id INTEGER,
            sha TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'patch',  -- patch or revert
            message TEXT, author TEXT, created_at TEXT NOT NULL,
            pushed_at TEXT, push_ref TEXT, push_error TEXT, reverted_by TEXT
        );
        CREATE INDEX commits_project_created ON commits(project, created_at);
        CREATE TABLE failures (
            id INTEGER PRIMARY KEY, project TEXT, unit TEXT NOT NULL, detected_at TEXT NOT NULL,
            active_state TEXT, result TEXT, exit_code TEXT, exit_status INTEGER,
            invocation_id TEXT, journal TEXT, source TEXT,   -- watch, sweep, on-failure
            heal TEXT,                  -- queued, gave_up, none
            run_id INTEGER
        );
        CREATE INDEX failures_project_detected ON failures(project, detected_at);
        CREATE INDEX failures_unit_detected ON failures(unit, detected_at);
        CREATE TABLE restarts (
            id INTEGER PRIMARY KEY, project TEXT, unit TEXT NOT NULL, run_id INTEGER,
            requested_at TEXT NOT NULL, finished_at TEXT,
            outcome TEXT,               -- healthy, unhealthy, error
            active_state TEXT, result TEXT, detail TEXT
        );
        CREATE INDEX restarts_project_requested ON restarts(project, requested_at);
        CREATE TABLE llm_calls (
            id INTEGER PRIMARY KEY, project TEXT, run_id INTEGER, provider TEXT NOT NULL,
            purpose TEXT NOT NULL,      -- summary, patch, commit-message
            model TEXT, started_at TEXT NOT NULL, duration_s REAL, exit_status INTEGER,
            outcome TEXT,               -- ok, failed, timeout, error
            thread_id TEXT, input_tokens INTEGER, cached_tokens INTEGER,
            output_tokens INTEGER, reasoning_tokens INTEGER, prompt_bytes INTEGER, error TEXT
        );
        CREATE INDEX llm_calls_project_started ON llm_calls(project, started_at);
        CREATE INDEX llm_calls_started ON llm_calls(started_at);
        CREATE TABLE triggers (
            id INTEGER PRIMARY KEY, project TEXT, kind TEXT,   -- run, heal, apply
            source TEXT,                -- cli, hook, dashboard, timer, watch, on-failure
            reason TEXT, failure_id INTEGER, proposal_id INTEGER,
            requested_at TEXT, consumed_at TEXT, run_id INTEGER,
            status TEXT,                -- done, failed, malformed
            file TEXT, detail TEXT
        );
        CREATE INDEX triggers_project_requested ON triggers(project, requested_at);
        CREATE TABLE status (key TEXT PRIMARY KEY, value TEXT, updated_at TEXT NOT NULL);
        """
    )


@migrations(name="002_core_proposal_lifecycle")
def _m002(db: sqlite_utils.Database) -> None:
    """Proposal lifecycle: who decided, a content fingerprint, and one event row per transition."""
    db.executescript(
        """
        ALTER TABLE proposals ADD COLUMN fingerprint TEXT;   -- git patch-id --stable of the diff
        ALTER TABLE proposals ADD COLUMN decided_by TEXT;    -- who approved, rejected or discarded it
        ALTER TABLE proposals ADD COLUMN decided_at TEXT;
        CREATE INDEX proposals_project_fingerprint ON proposals(project, fingerprint);
        CREATE TABLE proposal_events (
            id INTEGER PRIMARY KEY, proposal_id INTEGER NOT NULL, at TEXT NOT NULL,
            from_status TEXT, to_status TEXT NOT NULL,
            actor TEXT NOT NULL,        -- pimainteno, a provider, cli, dashboard:<actor>...
            reason TEXT
        );
        CREATE INDEX proposal_events_proposal ON proposal_events(proposal_id, id);
        """
    )


@migrations(name="003_notifications")
def _m003(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, event TEXT NOT NULL, project TEXT,
            target TEXT,                -- the apprise URL's scheme only: URLs carry secrets
            outcome TEXT NOT NULL,      -- sent, failed, timeout, held
            error TEXT, title TEXT
        );
        CREATE INDEX notifications_created ON notifications(created_at);
        """
    )


@migrations(name="004_llm_calls_codex_version")
def _m004(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE llm_calls ADD COLUMN codex_version TEXT")  # `codex --version` of the run


# SQLite's words for faults of the host, not of pimainteno: (what it says, what to tell the user).
_HOST_FAULTS = (
    (("database is locked", "database table is locked", "database is busy"),
     "database is locked by another process ({path}); wait for it to finish, or find it with `fuser {path}`"),
    (("database or disk is full",), "database or disk is full ({path}); free space on that disk"),
    (("disk i/o error",), "disk I/O error on the database ({path}); check the disk and `dmesg`"),
)  # fmt: skip


def host_fault(error: sqlite3.Error, path: str | os.PathLike[str] | None) -> DatabaseUnavailable | None:
    """The one-line error (exit 4) for a locked, full or failing database; None for anything else."""
    said = str(error).lower()
    for words, message in _HOST_FAULTS:
        if any(w in said for w in words):
            return DatabaseUnavailable(message.format(path=path or "the database"))
    return None


@migrations(name="005_proof_projects_proof")
def _m005(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE projects ADD COLUMN proof TEXT")  # how patches are proven (records.proof_of)


@migrations(name="006_proposals_commit_subject")
def _m006(db: sqlite_utils.Database) -> None:
    # the subject the patch call answered with: a commit needs no second model call
    db.execute("ALTER TABLE proposals ADD COLUMN commit_subject TEXT")


@migrations(name="007_failures_coalesce")
def _m007(db: sqlite_utils.Database) -> None:
    # Repeated failures of one unit within `coalesce` seconds are one row: how many, and the last one's time.
    db.execute("ALTER TABLE failures ADD COLUMN count INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE failures ADD COLUMN last_at TEXT")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


_migrated: set[str] = set()


def open_db(path: str | os.PathLike[str]) -> sqlite_utils.Database:
    """Open (creating atomically if needed) and migrate the database, once per process."""
    path = Path(path)
    try:
        if not path.exists():
            _create(path)
        # execute_plugins=False: no scan of every installed package's entry points (~10 ms a start) for
        # sqlite-utils plugins, which have no business changing pimainteno's connection
        db = sqlite_utils.Database(_connect(path), execute_plugins=False)
        key = str(path.resolve())
        if key not in _migrated:
            if migrations.pending(db):
                # Serialise upgrades between processes; a fresh file was migrated before it appeared.
                with _file_lock(path.with_name(path.name + ".migrate.lock")):
                    migrations.apply(db)
            _migrated.add(key)
        return db
    except sqlite3.DatabaseError as e:
        raise host_fault(e, path) or DatabaseUnavailable(
            f"database {path}: {e}; check the file or point --db elsewhere"
        ) from None
    except OSError as e:
        raise DatabaseUnavailable(f"database {path}: {e.strerror or e}; check the directory's permissions") from None


def reopen(path: str | os.PathLike[str]) -> sqlite_utils.Database:
    """Open ``path`` anew, migrating it even if this process already migrated a file there (it was replaced)."""
    _migrated.discard(str(Path(path).resolve()))
    return open_db(path)


def _create(path: Path) -> None:
    """Build a migrated database under a temporary name, then link it into place (never over one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        migrations.apply(sqlite_utils.Database(conn, execute_plugins=False))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        with contextlib.suppress(FileExistsError):  # another process won the race; its file is as good
            os.link(tmp, path)
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock up front (no read-to-write upgrade races).

    Inside another transaction it is a savepoint of that one, so library functions can nest.
    """
    if db.conn.in_transaction:
        name = f"pimainteno_{secrets.token_hex(6)}"
        db.conn.execute(f"SAVEPOINT {name}")
        try:
            yield db
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                db.conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        db.conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")
