"""`pimainteno status` on a real project: what a heal ended as, model calls apart from fixer runs,
the units the watcher watches, and a codex outside the tested range as a warning."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pimainteno import db, records
from pimainteno.cli import cli
from pimainteno.commands.demo import make_sample
from tests.conftest import make_repo, run_cli, run_git, write_config

PY = sys.executable


def configure(tmp_path: Path, *, extra: str = "", llm: str = "") -> Path:
    repo, _ = make_sample(tmp_path)
    fix = json.dumps([PY, "-m", "ruff", "check", "--fix", "--quiet", "--exit-zero", "."])
    tests = json.dumps([PY, "-m", "unittest", "discover", "-q"])
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\nprovider = "command"\ncommand = {fix}\n{llm}\n{extra}\n'
        f'[[project]]\nname = "app"\npath = "{repo}"\nbranch = "main"\ntest = {tests}\ntest_timeout = 60\n'
        'restart = false\nunit = "app.service"\n'
    )
    return repo


def invoke(*args: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def database(tmp_path: Path) -> db.sqlite_utils.Database:
    return db.open_db(tmp_path / "state" / "pimainteno.db")


def queued_failure(tmp_path: Path) -> int:
    invoke("projects")  # creates and migrates the database
    return records.add_failure(database(tmp_path), {"project": "app", "unit": "app.service", "result": "exit-code",
                                                    "exit_status": 1, "heal": "queued", "source": "watch"})  # fmt: skip


def test_a_finished_heal_is_no_longer_queued(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    failure = queued_failure(tmp_path)
    assert invoke("run", "app", "--failure", str(failure)).exit_code == 0
    assert run_git(tmp_path / "remote.git", "log", "-1", "--format=%s").strip()  # the fix was pushed
    report = json.loads(invoke("status", "--json").stdout)
    assert report["failures"][0] | {"detected_at": None} == {
        "id": failure, "project": "app", "unit": "app.service", "detected_at": None, "result": "exit-code",
        "exit_status": 1, "heal": "healed",
    }  # fmt: skip
    assert f"failure #{failure} app.service exit-code at " in invoke("status").stdout
    assert "(heal: healed)" in invoke("status").stdout
    # nothing left to fix: a second heal of a new failure ends `nothing`, and names its run
    second = queued_failure(tmp_path)
    assert invoke("run", "app", "--failure", str(second)).exit_code == 0
    row = records.failure_row(database(tmp_path), second)
    assert row is not None and (row["heal"], row["run_id"]) == ("nothing", 2)
    assert (repo / "demo_app" / "convert.py").exists()


def test_an_ended_heal_still_counts_toward_the_heal_limit(tmp_path: Path) -> None:
    configure(tmp_path)
    invoke("run", "app", "--failure", str(queued_failure(tmp_path)))
    assert records.count_heals_since(database(tmp_path), "app.service", "2000-01-01T00:00:00Z") == 1


def test_fixer_runs_are_not_model_calls(tmp_path: Path) -> None:
    configure(tmp_path)
    assert invoke("run", "app").exit_code == 0
    out = invoke("status").stdout
    assert "fixer runs (24h) app: 3 runs, 0 failed" in out
    assert "model calls" not in out and "tokens" not in out
    usage = json.loads(invoke("status", "--json").stdout)["usage"]
    assert usage == [{"project": "app", "calls": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0,
                      "fixer_runs": 3, "fixer_failed": 0}]  # fmt: skip


def test_the_monitor_line_names_the_units_the_watcher_watches(tmp_path: Path) -> None:
    configure(tmp_path, extra="[systemd_monitor]\nenabled = true\n")
    out = invoke("status").stdout
    assert "monitor    enabled (watching app.service); no heartbeat yet" in out
    database_ = database(tmp_path)
    records.set_status(database_, "systemd.units", json.dumps(["app.service", "other.service"]))
    records.set_status(database_, "systemd.status", "listening")
    out = invoke("status").stdout
    assert "monitor    enabled (watching app.service, other.service); listening (at " in out
    assert "stale" not in out


def test_a_codex_outside_the_tested_range_is_a_warning(tmp_path: Path) -> None:
    old = tmp_path / "old-codex"  # stands in for an old release: it answers `--version` only
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'codex-cli 0.150.2' && exit 0\nexit 1\n")
    old.chmod(0o755)
    configure(tmp_path, llm=f'codex = "{old}"\n\n[[project]]\nname = "b"\npath = "{tmp_path}"\nprovider = "codex"\n')
    result = invoke("status")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == (
        "warning    codex 0.150.2 is outside the range pimainteno is tested with (0.169.0 to 0.171.0); "
        "if runs misbehave, install @openai/codex@0.171.0"
    )
    assert json.loads(invoke("status", "--json").stdout)["warnings"] == [result.stdout.splitlines()[-1][11:]]


def test_no_codex_in_use_no_version_check(tmp_path: Path) -> None:
    configure(tmp_path, llm='codex = "/nonexistent/codex"')
    assert json.loads(invoke("status", "--json").stdout)["warnings"] == []


def test_status_on_a_new_config(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    write_config(tmp_path, f"[[project]]\npath = '{repo}'\ntest = 'true'\n")
    status = run_cli("status", "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert report["runs"] == [] and report["queue"]["pending"] == []
    text = run_cli("status")
    assert "queue      0 pending" in text.stdout and text.returncode == 0


def test_status_shows_runs_and_usage(tmp_path: Path) -> None:
    from pimainteno import db, records

    write_config(tmp_path, "")
    d = db.open_db(tmp_path / "state" / "pimainteno.db")
    records.insert(
        d, "runs", {"project": "app", "trigger": "hook", "started_at": records.now(), "status": "ok", "duration_s": 1.5}
    )
    records.insert(
        d,
        "llm_calls",
        {
            "project": "app",
            "provider": "codex",
            "purpose": "patch",
            "started_at": records.now(),
            "outcome": "ok",
            "input_tokens": 120,
            "output_tokens": 30,
        },
    )
    out = run_cli("status").stdout
    assert "#1" in out and "ok" in out and "hook" in out
    assert "model calls (24h) app: 1 call, 0 failed, 120 in / 30 out tokens" in out


def test_status_reads_without_sqlite_utils(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    write_config(
        tmp_path, f"[llm]\nprovider = 'command'\ncommand = 'true'\n[[project]]\npath = '{repo}'\ntest = 'true'\n"
    )
    assert run_cli("run", "app").returncode == 0  # a migrated database with a run in it
    code = (
        "import sys\nfrom pimainteno.cli import main\n"
        "try:\n    main(['status'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('sqlite_utils', 'pimainteno.db', 'pimainteno.failures') if m in sys.modules))"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert "#1" in out and out.strip().splitlines()[-1] == "[]"


def test_status_on_a_database_older_than_the_code_migrates_it(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    path = tmp_path / "state" / "pimainteno.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # an SQLite file from before any migration: no tables at all
    status = run_cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["runs"] == []
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone() == (1,)
    finally:
        conn.close()
