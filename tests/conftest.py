"""Shared fixtures: every test gets its own config, database and state directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.conftest_codex", "tests.conftest_systemd"]

REPO_ROOT = Path(__file__).resolve().parent.parent

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


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
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    (home / ".gitconfig").write_text('[init]\n\tdefaultBranch = main\n[protocol "file"]\n\tallow = always\n')
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


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | None = None):
    """The real console entry point in a subprocess (for exit codes and stderr as a user sees them)."""
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
