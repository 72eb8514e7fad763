"""Shared fixtures: every test gets its own config, database and state directory."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from pimainteno.queue import now as queue_now

pytest_plugins = ["tests.conftest_codex", "tests.conftest_systemd"]

REPO_ROOT = Path(__file__).resolve().parent.parent

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


# Property tests run twice: a small sample always (the quick loop: `pytest -m "not slow"`) and the full
# number of examples under the `slow` marker, which `make test` and CI run. Parametrize a test with
# `PROFILES` and build its settings with `fuzz(profile, full=N)`.
SMALL_SHARE = 10  # the small profile runs a tenth of the full examples
for _name in ("small", "full"):
    settings.register_profile(
        _name, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
    )
PROFILES = [pytest.param("small", id="small"), pytest.param("full", id="full", marks=pytest.mark.slow)]


def fuzz(profile: str, full: int) -> settings:
    """Hypothesis settings for one run of a property test: `full` examples, or a tenth (at least 5) when small."""
    examples = full if profile == "full" else max(5, full // SMALL_SHARE)
    return settings(settings.get_profile(profile), max_examples=examples)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point config, database, state and HOME at tmp_path so no test touches the user's files."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PIMAINTENO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PIMAINTENO_CONFIG", str(tmp_path / "PiMainteno.toml"))
    monkeypatch.delenv("PIMAINTENO_DB", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    (home / ".gitconfig").write_text('[init]\n\tdefaultBranch = main\n[protocol "file"]\n\tallow = always\n')
    # No journald keeps these tests' made-up units: a failure recorded in this process would wait 2 s
    # for a verdict line that never comes. Failures of real units (tests/systemd) run in the sandbox.
    monkeypatch.setattr("pimainteno.failures.JOURNAL_WAIT", 0.0)
    return tmp_path


def run_git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A real git repository with one commit."""
    path.mkdir(parents=True, exist_ok=True)
    run_git(path, "init", "-q", "-b", "main")
    for name, text in (files or {"README.md": "# sample\n\nA sample project.\n"}).items():
        f = path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    run_git(path, "add", "-A")
    run_git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def in_git_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "app")


def write_config(tmp_path: Path, text: str) -> Path:
    path = Path(os.environ["PIMAINTENO_CONFIG"])
    path.write_text(text)
    return path


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Wait for `condition()` to be true, checking every few milliseconds; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}")
        time.sleep(0.005)


def next_millisecond() -> None:
    """Wait until the clock shows a later millisecond: queue timestamps (requested_at) have that resolution."""
    start = queue_now()
    wait_until(lambda: queue_now() > start, "the clock to pass a millisecond", timeout=5)


@dataclass(frozen=True)
class CliResult:
    """What `run_cli` returns: the shape of `subprocess.CompletedProcess` that the tests read."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | None = None
) -> CliResult:
    """The CLI in this process through the real entry point (`cli.main`), its streams held by click's CliRunner.

    Exit codes and the one-line error forms are the entry point's own; what a process would not keep
    between two calls (the working directory, os.environ, the log handlers, the SIGTERM handler, the
    set of databases already migrated) is restored afterwards. Use `run_cli_process` where the process
    boundary is the point.
    """
    from pimainteno import db
    from pimainteno.cli import main

    log = logging.getLogger("pimainteno")
    saved_log = (log.handlers[:], log.level, log.propagate)
    saved_sigterm = signal.getsignal(signal.SIGTERM)
    saved_cwd = os.getcwd()
    saved_env = dict(os.environ)  # CliRunner restores only the keys it was given
    db._migrated.clear()  # a new process migrates once; so does each call here
    if codex := sys.modules.get("pimainteno.providers.codex_version"):
        codex.codex_version.cache_clear()  # read once per process
    runner = CliRunner()
    code: int | str | None = 0
    with runner.isolation(input=input, env=env) as (out, err, _mixed):
        try:
            if cwd is not None:
                os.chdir(cwd)
            main(list(args))
        except SystemExit as e:
            code = e.code
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            log.handlers[:], log.level, log.propagate = saved_log
            signal.signal(signal.SIGTERM, saved_sigterm)
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): the message goes to stderr, the code is 1
        stderr, code = stderr + f"{code}\n", 1
    return CliResult(["pimainteno", *args], code, stdout, stderr)


def run_cli_process(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a subprocess: for signals, real pipes, hooks and exit as a user sees it."""
    return subprocess.run(
        [sys.executable, "-m", "pimainteno", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
    )


# Tests that need root or a tool (codex, chromium, systemd) skip elsewhere with a reason; in CI
# (CI set in the environment) every one of them must run, so a skip fails the session.
_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _skipped and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line("CI: these tests were skipped but must run in CI:\n  " + "\n  ".join(_skipped[:20]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
