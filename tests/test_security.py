"""Issue 13's findings, each reproduced as an attacker or a faulty host did it (docs/security.md).

Real git repositories, real `pimainteno` processes, a real dashboard over HTTP. The findings whose
tests live beside the code they cover are listed in docs/security.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from pimainteno import db, errors
from pimainteno.commands.demo import make_sample
from pimainteno.pipeline.propose import SUMMARY_MARKER
from tests.conftest import run_cli, run_git
from tests.dashboard.process import running_dashboard
from tests.dashboard.test_http import Server

PY = sys.executable
TESTS = [PY, "-m", "unittest", "discover", "-q"]
API_KEY = "sk-security-test-0123456789abcdef"
TOKEN = "web-token-security-0123456789abcdef"


def configure(tmp_path: Path, *, command: list[str] | str, test: list[str] | str = TESTS, extra: str = "") -> Path:
    """The sample project under the `command` provider; its repository."""
    repo, _ = make_sample(tmp_path)
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\nprovider = "command"\ncommand = {json.dumps(command)}\n\n[web]\ntoken = "{TOKEN}"\n\n'
        f'[[project]]\nname = "app"\npath = "{repo}"\nbranch = "main"\ntest = {json.dumps(test)}\n'
        f"restart = false\nretries = 0\n{extra}"
    )
    return repo


def summarize(tmp_path: Path) -> Path:
    """The sample project configured with a fixer that changes nothing; its repository."""
    return configure(tmp_path, command=["true"])


def excluded(repo: Path) -> list[str]:
    exclude = repo / ".git" / "info" / "exclude"
    return [line for line in exclude.read_text().splitlines() if not line.startswith("#")] if exclude.exists() else []


# --- 1. the summary never replaces or hides a user's file -------------------------------------------


def test_1_an_untracked_user_codex_md_is_never_replaced_nor_hidden(tmp_path: Path) -> None:
    repo = summarize(tmp_path)
    (repo / "codex.md").write_bytes(b"my codex instructions\r\nkeep me\n")
    result = run_cli("summarize", "app")
    assert result.returncode == 0, result.stderr
    assert (repo / "codex.md").read_bytes() == b"my codex instructions\r\nkeep me\n"
    assert run_git(repo, "status", "--porcelain") == "?? codex.md\n"  # still shown to its owner
    assert excluded(repo) == []
    kept = tmp_path / "state" / "summaries" / "app.md"
    assert kept.read_text() == f"{SUMMARY_MARKER}\n{result.stdout}"
    [notice] = [line for line in result.stderr.splitlines() if "codex.md" in line]
    assert "is not pimainteno's" in notice and str(kept) in notice


def test_1_pimaintenos_own_summary_file_is_created_hidden_and_replaced(tmp_path: Path) -> None:
    repo = summarize(tmp_path)
    first = run_cli("summarize", "app")
    assert first.returncode == 0, first.stderr
    assert (repo / "codex.md").read_text() == f"{SUMMARY_MARKER}\n{first.stdout}"
    assert excluded(repo) == ["/codex.md"] and run_git(repo, "status", "--porcelain") == ""
    (repo / "codex.md").write_text(f"{SUMMARY_MARKER}\nan outdated summary\n")
    again = run_cli("summarize", "app")
    assert again.returncode == 0 and "codex.md" not in again.stderr
    assert (repo / "codex.md").read_text() == f"{SUMMARY_MARKER}\n{first.stdout}"
    assert not (tmp_path / "state" / "summaries").exists()


def test_1_a_summary_file_written_before_the_marker_is_still_pimaintenos(tmp_path: Path) -> None:
    repo = summarize(tmp_path)
    first = run_cli("summarize", "app")
    (repo / "codex.md").write_text(first.stdout)  # what earlier versions wrote: the summary, no marker
    again = run_cli("summarize", "app")
    assert again.returncode == 0 and "codex.md" not in again.stderr
    assert (repo / "codex.md").read_text() == f"{SUMMARY_MARKER}\n{first.stdout}"


def test_1_a_removed_marker_makes_the_file_the_users(tmp_path: Path) -> None:
    repo = summarize(tmp_path)
    first = run_cli("summarize", "app")
    mine = first.stdout + "\nMy own notes below the summary.\n"
    (repo / "codex.md").write_text(mine)
    again = run_cli("summarize", "app", "--force")
    assert again.returncode == 0 and "is not pimainteno's" in again.stderr
    assert (repo / "codex.md").read_text() == mine


@pytest.mark.parametrize("kind", ["symlink to a file outside", "symlinked directory", "directory"])
def test_1_a_summary_path_that_is_not_a_plain_file_in_the_project_is_left_alone(tmp_path: Path, kind: str) -> None:
    repo = configure(tmp_path, command=["true"], extra='summary_file = "notes/codex.md"\n')
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "codex.md").write_text("outside the project\n")
    if kind == "symlink to a file outside":
        (repo / "notes").mkdir()
        (repo / "notes" / "codex.md").symlink_to(outside / "codex.md")
    elif kind == "symlinked directory":
        (repo / "notes").symlink_to(outside)
    else:
        (repo / "notes" / "codex.md").mkdir(parents=True)
    result = run_cli("summarize", "app")
    assert result.returncode == 0, result.stderr
    assert (outside / "codex.md").read_text() == "outside the project\n"
    assert "the summary is in" in result.stderr and (tmp_path / "state" / "summaries" / "app.md").is_file()
    assert excluded(repo) == []


# --- 5. a secret printed by a failing fixer is stored, logged and served nowhere --------------------


@contextmanager
def dashboard(config_path: Path, env: dict[str, str]) -> Iterator[Server]:
    """A real `pimainteno dashboard` process on a free port."""
    with running_dashboard(config_path, env) as running:
        yield Server(running.proc, running.url, running.login, config_path.parent)


def assert_stored_logged_and_served_nowhere(tmp_path: Path, result: subprocess.CompletedProcess[str],
                                            secrets: tuple[str, ...], env: dict[str, str], said: str) -> None:  # fmt: skip
    """The secrets are in no output, no file of the state directory and no dashboard answer.

    ``said`` (table.column) is where the output that carried them is stored, scrubbed.
    """
    for secret in secrets:
        assert secret not in result.stdout and secret not in result.stderr
    d = db.open_db(tmp_path / "state" / "pimainteno.db")
    table, column = said.split(".")
    [stored] = [r[0] for r in d.execute(f"select {column} from {table}").fetchall()]
    assert "[redacted]" in stored  # it was said, and scrubbed before it was stored
    d.conn.close()
    for path in (tmp_path / "state").rglob("*"):  # the database's pages, its WAL, the log file, the queue
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret.encode() in data for secret in secrets), path
    with dashboard(tmp_path / "PiMainteno.toml", env) as server:
        cookie = server.root_cookie()
        for path in ("/pimainteno/runs.json", "/pimainteno/runs.json?_shape=array", "/pimainteno/llm_calls.json",
                     "/pimainteno/proposals.json", "/pimainteno/runs", "/pimainteno/runs?_facet=error",
                     "/pimainteno/runs.json?_facet=error", "/pimainteno/runs.csv", "/pimainteno/runs/1.json"):  # fmt: skip
            for headers in ({}, {"Cookie": cookie}):
                status, _, body = server.request("GET", path, headers)
                assert not any(secret in body for secret in secrets), (path, status)
        _, _, body = server.request("GET", f"/pimainteno/{table}.json?_shape=array")
        assert "[redacted]" in json.loads(body)[0][column]
        answers = {
            server.request("GET", f"/pimainteno/{table}.json?error__contains={probe}")[0]
            for table in ("runs", "llm_calls")
            for probe in (secrets[0][:8], secrets[0], "zzz-never-there")
        }
        assert answers == {400}  # refused alike: no yes/no oracle for the secret


def test_5_a_fixer_and_tests_that_print_the_api_key_and_fail_leak_it_nowhere(tmp_path: Path) -> None:
    leak = 'echo "stdout: key $OPENAI_API_KEY"; echo "stderr: key $OPENAI_API_KEY" >&2'
    fixer = ["sh", "-c", f"{leak}; echo '# touched' >> README.md; exit 1"]
    # The proof sandbox does not pass key-like variables to the tests, so these tests print the key
    # itself (as a suite that reads it from a file of the user's would).
    printed = leak.replace("$OPENAI_API_KEY", API_KEY)
    configure(tmp_path, command=fixer, test=f"{printed}; exit 1")
    result = run_cli("-v", "run", "app", "--json", env={"OPENAI_API_KEY": API_KEY})
    assert result.returncode == errors.VALIDATION_FAILED, result.stderr
    assert json.loads(result.stdout)["status"] == "rejected"
    # The dashboard does not know the environment's key: only what was stored can be served.
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    assert_stored_logged_and_served_nowhere(tmp_path, result, (API_KEY,), env, "proposals.test_output")


@pytest.mark.codex
def test_5_a_provider_that_fails_quoting_the_api_key_leaks_it_nowhere(
    tmp_path: Path, codex_bin: Path, codex_home: Path
) -> None:
    from tests.commands.test_codex_flow import SECRET
    from tests.commands.test_codex_flow import configure as configure_codex
    from tests.modelserver import ModelServer, http_error

    with ModelServer([http_error(401, f"Incorrect API key provided: {SECRET}.")]) as srv:
        configure_codex(tmp_path, srv, codex_bin)
        config = tmp_path / "PiMainteno.toml"
        config.write_text(config.read_text() + f'\n[web]\ntoken = "{TOKEN}"\n')
        result = run_cli("-v", "run", "app", "--json")
    assert result.returncode == errors.TOOL_FAILED, result.stderr
    d = db.open_db(tmp_path / "state" / "pimainteno.db")
    [call_error] = [r[0] for r in d.execute("select error from llm_calls").fetchall()]
    assert "Incorrect API key provided: [redacted]" in call_error
    d.conn.close()
    assert_stored_logged_and_served_nowhere(tmp_path, result, (SECRET, TOKEN), dict(os.environ), "runs.error")


# --- 6. a test that leaves a daemon behind cannot stretch the run or keep the lock ------------------


def test_6_test_timeout_bounds_a_run_whose_tests_leave_a_daemon(tmp_path: Path) -> None:
    marker = "40.0613"  # a sleep no other process on the machine runs
    fixer = [PY, "-m", "ruff", "check", "--fix", "--quiet", "--exit-zero", "."]
    configure(tmp_path, command=fixer, test=f"setsid sleep {marker} & sleep {marker}", extra="test_timeout = 2\n")
    start = time.monotonic()
    first = run_cli("run", "app", "--json")
    elapsed = time.monotonic() - start
    assert first.returncode == errors.VALIDATION_FAILED, first.stderr
    assert elapsed < 20, f"the run took {elapsed:.0f} s with test_timeout = 2"
    assert "timed out" in json.loads(first.stdout)["error"]
    assert not [p for p in Path("/proc").glob("[0-9]*") if marker in _cmdline(p)], "the daemon outlived the run"
    second = run_cli("run", "app", "--json", "--reason", "again")
    assert json.loads(second.stdout)["status"] != "skipped", second.stderr  # the project lock was released


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --- 11. a database locked by another writer is an external fault, said as such ---------------------


@contextmanager
def database_held(path: Path) -> Iterator[None]:
    """Another process holding the database's write lock (BEGIN IMMEDIATE) until the block ends."""
    hold = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); " \
           "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); sys.stdin.read()"  # fmt: skip
    proc = subprocess.Popen([PY, "-c", hold, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout and proc.stdout.readline() == "held\n"
        yield
    finally:
        proc.communicate(timeout=10)


@pytest.mark.parametrize("json_", [False, True])
def test_11_a_locked_database_is_exit_4_with_a_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_: bool
) -> None:
    from pimainteno.cli import cli

    summarize(tmp_path)
    path = tmp_path / "state" / "pimainteno.db"
    db.open_db(path).conn.close()
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 300)
    with database_held(path):
        start = time.monotonic()
        result = CliRunner().invoke(cli, ["projects", *(["--json"] if json_ else [])])
        assert time.monotonic() - start < 10
    assert result.exit_code == errors.TOOL_FAILED, result.output
    line = f"database is locked by another process ({path}); wait for it to finish, or find it with `fuser {path}`"
    assert result.stderr == f"Error: {line}\n"
    assert result.stdout == (json.dumps({"error": line, "exit_code": 4}) + "\n" if json_ else "")
    after = CliRunner().invoke(cli, ["projects", "--json"])  # released: the same command works
    assert after.exit_code == 0 and json.loads(after.stdout)[0]["name"] == "app"


def test_11_a_full_or_failing_disk_is_named_as_such() -> None:
    import sqlite3

    full = db.host_fault(sqlite3.OperationalError("database or disk is full"), "/x.db")
    failing = db.host_fault(sqlite3.OperationalError("disk I/O error"), "/x.db")
    assert full and str(full) == "database or disk is full (/x.db); free space on that disk"
    assert failing and str(failing).startswith("disk I/O error on the database (/x.db)")
    assert db.host_fault(sqlite3.OperationalError("no such table: runs"), "/x.db") is None  # a bug stays a bug


# --- 12. a policy refusal inside `run` is the patch-rejected exit code -----------------------------


@pytest.mark.parametrize("path", [".github/workflows/x.yml", ".GitHub/Workflows/X.YML"])
def test_12_a_fixer_that_writes_a_workflow_is_refused_with_exit_3(tmp_path: Path, path: str) -> None:
    write = f"import os; os.makedirs(os.path.dirname({path!r})); open({path!r}, 'w').write('on: push\\n')"
    repo = configure(tmp_path, command=[PY, "-c", write])
    before = run_git(repo, "rev-parse", "HEAD")
    result = run_cli("run", "app", "--json")
    assert result.returncode == errors.BAD_INPUT, result.stderr
    outcome = json.loads(result.stdout)
    assert (
        outcome["status"] == "rejected" and outcome["error"].startswith("patch rejected") and path in outcome["error"]
    )
    assert run_git(repo, "rev-parse", "HEAD") == before and not (repo / path).exists()


# --- docs/security.md names a test for every finding, and every test it names exists -------------


def test_security_md_names_an_existing_test_for_each_finding() -> None:
    import re

    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "security.md").read_text()
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| (.+) \|$", text, flags=re.M)
    assert [int(n) for n, _ in rows] == list(range(1, 14))
    for number, tests in rows:
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", tests)
        assert named or number == "4", f"finding {number} names no test"
        for path, name in named:
            assert re.search(rf"^(async )?def {name}\(", (root / path).read_text(), flags=re.M), f"{path}::{name}"


def test_5_a_refused_notify_url_is_not_repeated_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "PiMainteno.toml").write_text(
        f'[notify]\nurls = ["json://127.0.0.1:9/ok", "nosuchservice://user:{API_KEY}@host/"]\n'
    )
    result = run_cli("status")
    assert result.returncode == errors.BAD_INPUT and "notify.urls: expected apprise URLs" in result.stderr
    assert API_KEY not in result.stderr + result.stdout and "127.0.0.1:9" not in result.stderr
