"""What the soak tests share: the real dashboard server, and checks that a repository is untouched."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_git


def need(tool: str) -> str:
    """The tool's path, or a skip saying why (a skip fails the session under CI: see tests/conftest.py)."""
    found = shutil.which(tool)
    if not found:
        pytest.skip(f"{tool} is not installed")
    return found


def env_with_repo(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment, with the repository importable (tests.soak.* helper processes)."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


@contextlib.contextmanager
def dashboard() -> Iterator[str]:
    """`pimainteno dashboard --port 0` on the test's configuration; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pimainteno", "dashboard", "--port", "0"],
        env=env_with_repo(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("Dashboard: "), line + proc.stderr.read()
        yield line.split()[1].rstrip("/")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def get(base: str, path: str) -> tuple[int, str]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def repo_state(repo: Path) -> dict[str, object]:
    """HEAD, `git status` (the summary file is excluded by pimainteno itself), worktrees, branches, stashes."""
    return {
        "head": run_git(repo, "rev-parse", "HEAD"),
        "status": run_git(repo, "status", "--porcelain", "--untracked-files=all"),
        "worktrees": run_git(repo, "worktree", "list", "--porcelain").count("worktree "),
        "branches": run_git(repo, "branch", "--list"),
        "stash": run_git(repo, "stash", "list"),
    }


def one_line_error(stderr: str) -> str:
    """The last line of stderr, checked to be a one-line error and no traceback anywhere."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines, "no message on stderr"
    return lines[-1]
