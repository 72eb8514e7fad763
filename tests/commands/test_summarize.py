"""`summarize`: cached by HEAD, never dirties the repository, never overwrites a tracked file."""

from __future__ import annotations

import json
from pathlib import Path

from pimainteno.pipeline.propose import SUMMARY_MARKER
from tests.commands.project import (
    configure,
    count,
)
from tests.conftest import run_cli, run_git


def test_summarize_is_cached_by_head_and_never_dirties_the_repo(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    first = run_cli("summarize", "app")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("# app\n") and "A tiny temperature converter" in first.stdout
    assert (repo / "codex.md").read_text() == SUMMARY_MARKER + "\n" + first.stdout
    assert run_git(repo, "status", "--porcelain") == ""
    second = run_cli("summarize", "app")
    assert second.stdout == first.stdout
    assert count(tmp_path, "select count(*) from llm_calls where purpose = 'summary'") == 1
    forced = run_cli("summarize", "app", "--force", "--json")
    assert json.loads(forced.stdout)["cached"] is False
    assert count(tmp_path, "select count(*) from llm_calls where purpose = 'summary'") == 2


def test_tracked_summary_file_is_never_overwritten(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    (repo / "codex.md").write_text("my own notes\n")
    run_git(repo, "add", "codex.md")
    run_git(repo, "commit", "-qm", "notes")
    assert run_cli("summarize", "app").returncode == 0
    assert (repo / "codex.md").read_text() == "my own notes\n"
