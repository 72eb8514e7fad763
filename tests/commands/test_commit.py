"""`commit`: pimainteno's commit (its identity, the proposal trailer) of an applied proposal, and no push."""

from __future__ import annotations

from pathlib import Path

from pimainteno import errors
from tests.commands.project import (
    configure,
    database,
    fingerprint,
)
from tests.conftest import run_cli, run_git


def test_commit_makes_pimaintenos_commit_of_the_applied_proposal_and_pushes_nothing(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    start = run_git(repo, "rev-parse", "HEAD")
    assert run_cli("apply", input=run_cli("propose", "app").stdout).returncode == 0
    committed = run_cli("commit", "app")
    assert committed.returncode == 0, committed.stderr
    message = run_git(repo, "log", "-1", "--format=%an <%ae>%n%B")
    assert message.startswith("pimainteno <pimainteno@") and "Pimainteno-Proposal: 1" in message
    assert run_git(repo, "rev-parse", "HEAD^") == start and run_git(repo, "status", "--porcelain") == ""
    assert run_git(tmp_path / "remote.git", "rev-parse", "main") == start  # committing is not pushing
    assert database(tmp_path).execute("select status from proposals where id = 1").fetchone() == ("committed",)


def test_commit_with_nothing_applied_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    before = fingerprint(repo)
    result = run_cli("commit", "app")
    assert result.returncode == errors.BAD_INPUT and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: nothing applied to commit in app; run `pimainteno apply` first")
    assert fingerprint(repo) == before
