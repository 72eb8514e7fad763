from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from pimainteno import db, records

EXPECTED = {
    "projects": {"name", "path", "unit", "remote", "branch", "mode", "provider", "proof", "updated_at"},
    "runs": {
        "id",
        "project",
        "trigger",
        "failure_id",
        "started_at",
        "finished_at",
        "duration_s",
        "status",
        "step",
        "steps",
        "proposal_id",
        "commit_sha",
        "error",
        "pid",
    },
    "summaries": {"id", "project", "head", "created_at", "provider", "text", "llm_call_id"},
    "proposals": {
        "id",
        "project",
        "run_id",
        "created_at",
        "updated_at",
        "base_head",
        "provider",
        "reason",
        "failure_id",
        "status",
        "status_reason",
        "test_output",
        "commit_subject",
        "files",
        "added",
        "removed",
        "diff",
        "fingerprint",
        "decided_by",
        "decided_at",
    },
    "proposal_events": {"id", "proposal_id", "at", "from_status", "to_status", "actor", "reason"},
    "commits": {
        "id",
        "project",
        "run_id",
        "proposal_id",
        "sha",
        "kind",
        "message",
        "author",
        "created_at",
        "pushed_at",
        "push_ref",
        "push_error",
        "reverted_by",
    },
    "failures": {
        "id",
        "count",
        "last_at",
        "project",
        "unit",
        "detected_at",
        "active_state",
        "result",
        "exit_code",
        "exit_status",
        "invocation_id",
        "journal",
        "source",
        "heal",
        "run_id",
    },
    "restarts": {
        "id",
        "project",
        "unit",
        "run_id",
        "requested_at",
        "finished_at",
        "outcome",
        "active_state",
        "result",
        "detail",
    },
    "llm_calls": {
        "id",
        "project",
        "run_id",
        "provider",
        "purpose",
        "model",
        "started_at",
        "duration_s",
        "exit_status",
        "outcome",
        "thread_id",
        "codex_version",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "reasoning_tokens",
        "prompt_bytes",
        "error",
    },
    "triggers": {
        "id",
        "project",
        "kind",
        "source",
        "reason",
        "failure_id",
        "proposal_id",
        "requested_at",
        "consumed_at",
        "run_id",
        "status",
        "file",
        "detail",
    },
    "status": {"key", "value", "updated_at"},
}

# Every migration in declaration order; each new one is appended (and named after its branch).
MIGRATIONS = [
    "001_initial",
    "002_core_proposal_lifecycle",
    "003_notifications",
    "004_llm_calls_codex_version",
    "005_proof_projects_proof",
    "006_proposals_commit_subject",
    "007_failures_coalesce",
]


def test_a_first_release_database_upgrades_keeping_its_proposals(tmp_path: Path) -> None:
    """A database made by 001 alone gains the lifecycle columns and table; its rows stay."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    old = db.sqlite_utils.Database(conn)
    first = next(m for m in db.migrations._migrations if m.name == "001_initial")
    only_first = db.Migrations("pimainteno")
    only_first(name=first.name)(first.fn)
    only_first.apply(old)
    conn.execute(
        "INSERT INTO proposals (project, created_at, status, diff) VALUES ('app', '2026-01-01T00:00:00.000Z', "
        "'proposed', 'diff --git a/x b/x')"
    )
    conn.commit()
    conn.close()
    d = db.open_db(path)
    assert [m.name for m in db.migrations.applied(d)] == MIGRATIONS
    assert set(d["proposals"].columns_dict) == EXPECTED["proposals"]
    assert [r["status"] for r in d["proposals"].rows] == ["proposed"]
    assert d["proposal_events"].count == 0


def test_blank_database_migrates_to_expected_columns(tmp_path: Path) -> None:
    d = db.open_db(tmp_path / "x.db")
    for table, columns in EXPECTED.items():
        assert set(d[table].columns_dict) == columns, table
    assert d.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert d.conn.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS
    assert d.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    indexes = {i.name for i in d["runs"].indexes}
    assert "runs_project_started" in indexes
    assert [m.name for m in db.migrations.applied(d)] == MIGRATIONS
    assert not list(tmp_path.glob(".x.db.*")), "temporary files left behind"


def test_migrations_rerun_is_noop(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    d = db.open_db(path)
    records.insert(d, "status", {"key": "k", "value": "v", "updated_at": records.now()})
    db._migrated.clear()
    d2 = db.open_db(path)
    assert len(db.migrations.applied(d2)) == len(MIGRATIONS)
    assert d2.execute("select value from status").fetchone()[0] == "v"
    db.migrations.apply(d2)  # applying again changes nothing
    assert len(db.migrations.applied(d2)) == len(MIGRATIONS)


def test_database_with_pending_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    """An existing file whose migrations are behind is migrated where it is (not recreated)."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE _sqlite_migrations (id INTEGER PRIMARY KEY, migration_set TEXT, name TEXT, applied_at TEXT)"
    )
    conn.execute("CREATE UNIQUE INDEX m ON _sqlite_migrations(migration_set, name)")
    conn.commit()
    conn.close()
    inode = path.stat().st_ino
    d = db.open_db(path)
    assert "runs" in d.table_names() and path.stat().st_ino == inode
    assert [m.name for m in db.migrations.applied(d)] == MIGRATIONS


def test_existing_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    d = db.open_db(path)
    records.set_status(d, "systemd.status", "listening")
    inode = path.stat().st_ino
    db._create(path)  # a racing creator loses quietly
    assert path.stat().st_ino == inode
    assert records.get_status(db.open_db(path))["systemd.status"]["value"] == "listening"


WRITER = """
import sys
from pimainteno import db, records
d = db.open_db(sys.argv[1])
for i in range(int(sys.argv[3])):
    with db.transaction(d):
        records.insert(d, "runs", {"project": sys.argv[2], "trigger": "test", "started_at": records.now(), "status": "ok"})
        records.set_status(d, "last." + sys.argv[2], str(i))
"""


def test_concurrent_writers_never_see_database_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "x.db"  # not created yet: the writers also race to create it
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{i}", "150"], stderr=subprocess.PIPE, text=True)
        for i in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    d = db.open_db(path)
    assert d.execute("select count(*) from runs").fetchone()[0] == 900
    assert {r[0] for r in d.execute("select project from runs")} == {f"p{i}" for i in range(6)}
