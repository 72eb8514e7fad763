"""`push`: the by-hand chain propose → apply → commit → push reaches the remote."""

from __future__ import annotations

from pathlib import Path

from tests.commands.project import (
    configure,
    database,
)
from tests.conftest import run_cli, run_git


def test_by_hand_propose_apply_commit_push(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    patch = run_cli("propose", "app").stdout
    applied = run_cli("apply", input=patch)
    assert applied.returncode == 0, applied.stderr
    assert run_git(repo, "status", "--porcelain").startswith("M  demo_app/convert.py")
    committed = run_cli("commit", "app")
    assert committed.returncode == 0, committed.stderr
    message = run_git(repo, "log", "-1", "--format=%an <%ae>%n%B")
    assert "Apply ruff fixes to convert.py" in message and "Pimainteno-Proposal: 1" in message
    assert message.startswith("pimainteno <pimainteno@")
    pushed = run_cli("push", "app")
    assert pushed.returncode == 0, pushed.stderr
    remote = tmp_path / "remote.git"
    assert run_git(remote, "rev-parse", "main") == run_git(repo, "rev-parse", "HEAD")
    row = database(tmp_path).execute("select status from proposals where id = 1").fetchone()
    assert row == ("pushed",)
