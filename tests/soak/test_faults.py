"""The whole pipeline under fault injection: each fault ends in a recorded failure (when the
database is writable), an untouched repository and one clear line; the next run succeeds once
the fault is gone.

Faults: the model server dropping the connection, answering garbage or hanging (the real codex
CLI, tests/modelserver.py); the remote rejecting the push; the project's tests hanging; the disk
of the state directory full (a tiny tmpfs mounted in a private mount namespace, as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pimainteno import errors
from pimainteno.commands.demo import make_sample
from pimainteno.providers.codex import toml_value
from tests.commands.project import RUFF_FIX, TESTS, toml_list
from tests.commands.test_codex_flow import EDIT
from tests.conftest import CliResult, run_cli, run_git
from tests.modelserver import ModelServer, Turn, drop, exec_command, garbage, hang, message
from tests.soak.helpers import need, one_line_error, repo_state

pytestmark = pytest.mark.slow

SUMMARY = "# app\n\nConverts temperatures."


def write_config(tmp_path: Path, repo: Path, llm: str, *, test: list[str] = TESTS, extra: str = "") -> None:
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\n{llm}\n\n[[project]]\nname = "app"\npath = "{repo}"\nbranch = "main"\n'
        f'test = {toml_list(test)}\nmode = "push"\nretries = 0\n{extra}'
    )


def codex_llm(srv: ModelServer, codex_bin: Path, timeout: float = 30) -> str:
    llm = srv.llm_config(codex_bin)
    options = ", ".join(f"{k} = {toml_value(v)}" for k, v in llm.options.items())
    return (f'provider = "codex"\ncodex = "{codex_bin}"\nmodel = "{llm.model}"\ntimeout = {timeout}\n'
            f"options = {{ {options} }}")  # fmt: skip


COMMAND_LLM = f'provider = "command"\ncommand = {toml_list(RUFF_FIX)}'


def rows(tmp_path: Path, sql: str, db: Path | None = None) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db or tmp_path / "state" / "pimainteno.db")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def failed_cleanly(result: CliResult | subprocess.CompletedProcess[str], code: int, status: str) -> str:
    """One `app: <status> — run #N — <error>` line on stdout, no traceback; returns the error."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    one_line_error(result.stderr or "no traceback")
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith(f"app: {status} — run #"), line
    return line.split(" — ", 2)[2]


def untouched(repo: Path, before: dict[str, object], tmp_path: Path) -> None:
    assert repo_state(repo) == before
    worktrees = tmp_path / "state" / "worktrees"
    assert not worktrees.exists() or not list(worktrees.iterdir()), "a worktree was left behind"


def pushed(repo: Path) -> bool:
    return run_git(repo, "rev-parse", "HEAD") == run_git(repo.parent / "remote.git", "rev-parse", "main")


# --- the model server -------------------------------------------------------------------------

RECOVERY = [exec_command(EDIT), message("Removed an unused import."), message("Remove the unused os import")]


@pytest.mark.codex
@pytest.mark.parametrize(
    ("script", "timeout", "step", "expected", "summary_cached"),
    [
        ([drop()], 30, "summarize", "stream disconnected before completion", False),
        ([message(SUMMARY), garbage()], 30, "propose", "stream closed before response.completed", True),
        ([message(SUMMARY), hang()], 2, "propose", "timed out after 2s", True),
    ],
    ids=["drop", "garbage", "hang"],
)
def test_model_server_faults(tmp_path: Path, codex_bin: Path, codex_home: Path, script: list[Turn], timeout: float,
                             step: str, expected: str, summary_cached: bool) -> None:  # fmt: skip
    repo, _ = make_sample(tmp_path)
    before = repo_state(repo)
    with ModelServer(script) as srv:
        write_config(tmp_path, repo, codex_llm(srv, codex_bin, timeout))
        started = time.monotonic()
        result = run_cli("run", "app")
        assert time.monotonic() - started < timeout + 30
    error = failed_cleanly(result, errors.TOOL_FAILED, "failed")
    assert expected in error and "\n" not in error
    (run,) = rows(tmp_path, "select * from runs")
    assert (run["status"], run["step"], run["error"]) == ("failed", step, error)
    call = rows(tmp_path, "select * from llm_calls order by id desc limit 1")[0]
    assert call["outcome"] in ("failed", "timeout") and call["purpose"] == (
        "summary" if step == "summarize" else "patch"
    )
    untouched(repo, before, tmp_path)

    with ModelServer(([] if summary_cached else [message(SUMMARY)]) + RECOVERY) as srv:
        write_config(tmp_path, repo, codex_llm(srv, codex_bin))
        again = run_cli("run", "app")
    assert again.returncode == 0, again.stdout + again.stderr
    assert rows(tmp_path, "select status from runs order by id desc limit 1")[0]["status"] == "ok"
    assert run_git(repo, "log", "-1", "--format=%s").strip() == "Remove the unused os import"
    assert pushed(repo) and run_git(repo, "status", "--porcelain") == ""


@pytest.mark.codex
def test_a_dropped_commit_message_request_falls_back_to_a_plain_message(
    tmp_path: Path, codex_bin: Path, codex_home: Path
) -> None:
    repo, _ = make_sample(tmp_path)
    with ModelServer([message(SUMMARY), exec_command(EDIT), message("Removed an unused import."), drop()]) as srv:
        write_config(tmp_path, repo, codex_llm(srv, codex_bin))
        result = run_cli("run", "app")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(r["purpose"], r["outcome"]) for r in rows(tmp_path, "select * from llm_calls order by id")] == [
        ("summary", "ok"), ("patch", "ok"), ("commit-message", "failed")
    ]  # fmt: skip
    assert pushed(repo) and "Pimainteno-Proposal: 1" in run_git(repo, "log", "-1", "--format=%B")


# --- git push rejected ------------------------------------------------------------------------


def test_refused_push_keeps_the_commit_local_and_the_next_run_pushes_it(tmp_path: Path) -> None:
    repo, remote = make_sample(tmp_path)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'push refused by the remote policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    write_config(tmp_path, repo, COMMAND_LLM)
    remote_before = run_git(remote, "rev-parse", "main")
    result = run_cli("run", "app")
    error = failed_cleanly(result, errors.TOOL_FAILED, "failed")
    assert "push" in error and "\n" not in error, error
    (run,) = rows(tmp_path, "select * from runs")
    assert (run["status"], run["step"]) == ("failed", "restart")  # the refused push does not keep the unit down
    (commit,) = rows(tmp_path, "select * from commits")
    assert commit["pushed_at"] is None and commit["push_error"]
    # the whole validated commit is in, nothing else: a clean tree, one worktree, the remote untouched
    assert run_git(repo, "rev-parse", "HEAD").strip() == commit["sha"]
    assert run_git(repo, "status", "--porcelain") == ""
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert run_git(remote, "rev-parse", "main") == remote_before

    hook.unlink()
    again = run_cli("run", "app")
    assert again.returncode == 0, again.stdout + again.stderr
    assert pushed(repo)
    assert rows(tmp_path, "select pushed_at from commits")[0]["pushed_at"]
    # The message says why: git's per-ref status ("[remote rejected] (pre-receive hook declined)",
    # on stdout with --porcelain) or the remote's own words, not only "failed to push some refs".
    assert "declined" in error or "refused by the remote policy" in error, error


# --- the project's tests hang -----------------------------------------------------------------

MARK = "613.25"  # an unusual sleep, to find leftovers by their command line


def leftovers() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", MARK.encode()]:
                found.append(int(proc.name))
    return found


def test_hanging_tests_are_killed_and_the_proposal_rejected(tmp_path: Path) -> None:
    # Outside /tmp and $HOME, which the proof sandbox replaces with private ones; the rest of the host
    # is shown to the tests read-only, so they see the flag (and its removal).
    flagdir = Path(tempfile.mkdtemp(prefix="pimainteno-test-", dir="/var/tmp"))
    try:
        _hanging_tests_are_killed(tmp_path, flagdir / "tests-hang")
    finally:
        shutil.rmtree(flagdir, ignore_errors=True)


def _hanging_tests_are_killed(tmp_path: Path, flag: Path) -> None:
    repo, _ = make_sample(tmp_path)
    flag.touch()
    hanging = ["sh", "-c", f'if [ -e "{flag}" ]; then sleep {MARK}; fi; exec "$0" "$@"', *TESTS]
    write_config(tmp_path, repo, COMMAND_LLM, test=hanging, extra="test_timeout = 1\n")
    before = repo_state(repo)
    started = time.monotonic()
    result = run_cli("run", "app")
    assert time.monotonic() - started < 60
    error = failed_cleanly(result, errors.VALIDATION_FAILED, "rejected")
    assert "timed out" in error and "not applied" in error, error
    (proposal,) = rows(tmp_path, "select * from proposals")
    assert proposal["status"] == "rejected" and "timed out" in proposal["status_reason"]
    assert rows(tmp_path, "select status from runs")[0]["status"] == "rejected"
    assert not leftovers(), "the hanging test command survived its timeout"
    untouched(repo, before, tmp_path)

    flag.unlink()
    write_config(tmp_path, repo, COMMAND_LLM, test=hanging)  # the real tests may take more than a second
    # The same change failed before: only an explicit --retry-known tries it again
    again = run_cli("run", "app", "--reason", "retry now that the tests work", "--retry-known")
    assert again.returncode == 0, again.stdout + again.stderr
    assert pushed(repo) and run_git(repo, "rev-parse", "HEAD") != before["head"]


# --- the state directory's disk is full -------------------------------------------------------


@contextlib.contextmanager
def private_tmpfs(mountpoint: Path, size: str) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """A tmpfs on `mountpoint` seen only by the commands run through the yielded function.

    It lives in a private mount namespace held open by a sleeping process: nothing leaks to the
    host, and the tmpfs goes away with that process.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs in a private mount namespace needs root")
    unshare, nsenter = need("unshare"), need("nsenter")
    holder = subprocess.Popen([unshare, "--mount", "--propagation", "private", "sleep", "3600"])
    try:
        ours = os.readlink("/proc/self/ns/mnt")
        for _ in range(500):  # until unshare has made the namespace and exec'd sleep in it
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{holder.pid}/ns/mnt") != ours:
                    break
            time.sleep(0.01)

        def inside(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
            kw.setdefault("capture_output", True)
            return subprocess.run([nsenter, "-t", str(holder.pid), "-m", *argv], text=True, timeout=300, **kw)

        mountpoint.mkdir(parents=True, exist_ok=True)
        mounted = inside("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountpoint))
        assert mounted.returncode == 0, mounted.stderr
        yield inside
    finally:
        holder.kill()
        holder.wait()


FILL = """
import sys
with open(sys.argv[1], "wb") as f:
    try:
        while True:
            f.write(b"x" * 4096)
            f.flush()
    except OSError:
        pass
"""


@pytest.mark.parametrize("database", ["in-the-full-state-dir", "elsewhere"])
def test_full_state_disk(tmp_path: Path, database: str) -> None:
    repo, _ = make_sample(tmp_path)
    state = tmp_path / "state"
    db = state / "pimainteno.db" if database == "in-the-full-state-dir" else tmp_path / "db" / "pimainteno.db"
    write_config(tmp_path, repo, COMMAND_LLM, extra=f'\n[database]\npath = "{db}"\n')
    before = repo_state(repo)
    with private_tmpfs(state, "2m") as inside:
        py = [sys.executable, "-m", "pimainteno"]
        assert inside(*py, "summarize", "app").returncode == 0  # the database and state as a run leaves them
        inside(sys.executable, "-c", FILL, str(state / "filler"))
        assert inside("df", "--output=avail", str(state)).stdout.split()[-1] == "0"

        result = inside(*py, "run", "app")
        assert result.returncode == errors.TOOL_FAILED, result.stdout + result.stderr
        if database == "elsewhere":  # the database is writable: the failure is recorded
            error = failed_cleanly(result, errors.TOOL_FAILED, "failed")
            assert "No space left on device" in error, error
            run = rows(tmp_path, "select * from runs", db)[-1]
            assert (run["status"], run["error"]) == ("failed", error)
        else:  # nothing can be recorded: one line says where the problem is
            last = one_line_error(result.stderr)
            assert last.startswith("Error: ") and str(db) in last and "disk" in last, last
        assert repo_state(repo) == before
        assert not inside("ls", "-A", str(state / "worktrees")).stdout.strip(), "a worktree was left behind"

        inside("rm", str(state / "filler"))
        again = inside(*py, "run", "app")
        assert again.returncode == 0, again.stdout + again.stderr
        # read inside: a database in the state directory exists only in the private namespace
        final = inside(sys.executable, "-c", f"import sqlite3; print(sqlite3.connect('{db}').execute("
                       "\"select status from runs order by id desc limit 1\").fetchone()[0])")  # fmt: skip
        assert final.stdout.strip() == "ok", final.stdout + final.stderr
    assert pushed(repo)
