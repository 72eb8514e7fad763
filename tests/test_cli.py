from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pimainteno import errors
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
        "heavy = {'datasette', 'pystemd', 'unidiff', 'sqlite_utils', 'plumbum', 'pimainteno.providers', 'pimainteno.config', 'pimainteno.queue'}\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


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


def test_every_id_option_of_every_command_uses_the_one_id_type() -> None:
    from pimainteno import queue
    from pimainteno.cli import ROW_ID, cli

    assert ROW_ID.max == queue.MAX_ID  # the same bound where ids are typed and where triggers are read
    ids = [(name, p.name) for name, cmd in cli.commands.items() for p in cmd.params if (p.name or "").endswith("_id")]
    assert ("apply", "proposal_id") in ids and ("run", "failure_id") in ids and len(ids) >= 5
    for name, param in ids:
        assert cli.commands[name].params[[p.name for p in cli.commands[name].params].index(param)].type is ROW_ID


@pytest.mark.parametrize(
    "args",
    [
        ["propose", "app", "--failure"],
        ["apply", "--proposal"],
        ["run", "app", "--failure"],
        ["enqueue", "app", "--failure"],
    ],
)
def test_huge_ids_are_usage_errors_in_every_command(tmp_path: Path, args: list[str]) -> None:
    from click.testing import CliRunner

    from pimainteno.cli import cli

    write_config(tmp_path, f"[[project]]\npath = '{make_repo(tmp_path / 'app')}'\n")
    for value in ("1e20", "99999999999999999999999"):
        result = CliRunner().invoke(cli, [*args, value])
        assert result.exit_code == errors.USAGE, result.output
        assert "Invalid value for" in result.output and "OverflowError" not in result.output
