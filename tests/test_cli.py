from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pimainteno import config, errors
from pimainteno.cli import cli
from tests.conftest import REPO_ROOT, make_repo, run_cli, run_cli_process, write_config

DOCS = (REPO_ROOT / "docs" / "commands.md").read_text()


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_and_a_docs_entry(name: str) -> None:
    command = cli.commands[name]
    assert command.help and command.help.strip(), f"{name} has no help text"
    assert f"\n### pimainteno {name}\n" in DOCS, f"docs/commands.md has no entry for {name}: run `make docs`"
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="pimainteno")
    assert result.exit_code == 0 and "Usage: pimainteno" in result.output


def test_docs_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cogapp", "-I", "docs", "--check", "docs/commands.md"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, "docs/commands.md is out of date: run `make docs`\n" + result.stderr


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\nfrom pimainteno.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'datasette', 'pystemd', 'unidiff', 'sqlite_utils', 'plumbum', 'pimainteno.providers', 'pimainteno.config'}\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_init_writes_a_config_that_loads_and_never_overwrites(tmp_path: Path) -> None:
    # the host's configuration, here PIMAINTENO_CONFIG (tests/commands/test_onboard.py covers the rest)
    target = tmp_path / "PiMainteno.toml"
    first = run_cli("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    cfg = config.load(target)
    assert cfg.projects == () and cfg.database.exists()
    before = target.read_bytes()
    again = run_cli("init", cwd=tmp_path)
    assert again.returncode == 0 and f"kept the existing configuration {target}" in again.stderr
    assert target.read_bytes() == before


def test_projects_and_status_on_a_new_config(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    write_config(tmp_path, f"[[project]]\npath = '{repo}'\ntest = 'true'\n")
    rows = json.loads(run_cli("projects", "--json").stdout)
    assert rows == [
        {
            "name": "app",
            "path": str(repo),
            "unit": "app.service",
            "mode": "push",
            "provider": "codex",
            "test": "true",
            "problem": None,
            "last_run": None,
        }
    ]
    status = run_cli("status", "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert report["runs"] == [] and report["queue"]["pending"] == []
    text = run_cli("status")
    assert "queue      0 pending" in text.stdout and text.returncode == 0


def test_status_shows_runs_and_usage(tmp_path: Path) -> None:
    from pimainteno import db

    write_config(tmp_path, "")
    d = db.open_db(tmp_path / "state" / "pimainteno.db")
    db.insert(
        d, "runs", {"project": "app", "trigger": "hook", "started_at": db.now(), "status": "ok", "duration_s": 1.5}
    )
    db.insert(
        d,
        "llm_calls",
        {
            "project": "app",
            "provider": "codex",
            "purpose": "patch",
            "started_at": db.now(),
            "outcome": "ok",
            "input_tokens": 120,
            "output_tokens": 30,
        },
    )
    out = run_cli("status").stdout
    assert "#1" in out and "ok" in out and "hook" in out
    assert "model calls (24h) app: 1 calls, 0 failed, 120 in / 30 out tokens" in out


def test_unexpected_error_is_one_line_with_a_logged_traceback(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    db_dir = tmp_path / "state" / "pimainteno.db"
    db_dir.mkdir(parents=True)  # a directory where the database should be: sqlite fails to open it
    result = run_cli_process("status")  # the exit code and stderr of the real `python -m pimainteno`
    assert result.returncode == errors.TOOL_FAILED
    assert result.stderr.startswith("Error: database ") and len(result.stderr.strip().splitlines()) == 1


def test_crash_goes_to_log_file(tmp_path: Path) -> None:
    # A genuine bug (here: a monkeypatched crash) must be one line plus a traceback in the log.
    code = (
        "import sys\nfrom pimainteno.commands import status\n"
        "def boom(app):\n    raise RuntimeError('kaput')\n"
        "status.status = boom\nfrom pimainteno.cli import main\nmain(['status'])"
    )
    write_config(tmp_path, "")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == errors.UNEXPECTED
    log = tmp_path / "state" / "log" / "pimainteno.log"
    assert result.stderr.strip() == f"Error: unexpected RuntimeError: kaput (a bug; traceback in {log})"
    assert "Traceback" in log.read_text() and "kaput" in log.read_text()
    verbose = subprocess.run(
        [sys.executable, "-c", code.replace("['status']", "['-v', 'status']")], capture_output=True, text=True
    )
    assert "Traceback" in verbose.stderr and verbose.returncode == errors.UNEXPECTED


def test_run_cli_leaves_no_trace_in_the_test_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging
    import os
    import signal

    write_config(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    log = logging.getLogger("pimainteno")
    before = (log.handlers[:], log.level, log.propagate, signal.getsignal(signal.SIGTERM), dict(os.environ))
    result = run_cli("-v", "status", cwd=tmp_path / "home", env={"PIMAINTENO_EXTRA": "1"})
    assert result.returncode == 0, result.stderr
    after = (log.handlers[:], log.level, log.propagate, signal.getsignal(signal.SIGTERM), dict(os.environ))
    assert after == before and Path.cwd() == tmp_path
    # the same answer as the real process gives
    assert run_cli("status", "--json").stdout == run_cli_process("status", "--json").stdout
