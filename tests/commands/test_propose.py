"""`propose`: a patch that applies, from a real fixer; no model call when nothing changed; the prompt's budget."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pimainteno import errors
from tests.commands.project import (
    configure,
    count,
    database,
    fingerprint,
    logging_fixer,
)
from tests.conftest import run_cli


def test_propose_prints_an_applicable_patch_and_leaves_the_tree_alone(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    before = fingerprint(repo)
    result = run_cli("propose", "app")
    assert result.returncode == 0, result.stderr
    patch = result.stdout
    assert patch.startswith("# pimainteno project=app proposal=1\n")
    assert "-import os" in patch and "-from typing import List" in patch
    check = subprocess.run(["git", "-C", str(repo), "apply", "--check", "-"], input=patch, text=True)
    assert check.returncode == 0
    after = fingerprint(repo)
    assert after == before
    row = database(tmp_path).execute("select status, files, added, removed, base_head from proposals").fetchone()
    assert row == ("proposed", '["demo_app/convert.py"]', 0, 3, before[0].strip())
    assert not list((tmp_path / "state" / "worktrees").iterdir()), "worktree left behind"


def test_propose_signal_makes_no_model_call_when_nothing_changed(tmp_path: Path) -> None:
    configure(tmp_path)
    assert run_cli("propose", "app").stdout
    calls = count(tmp_path, "select count(*) from llm_calls")
    again = run_cli("propose", "app")
    assert again.returncode == 0 and again.stdout == ""
    assert "nothing to propose: HEAD" in again.stderr
    assert count(tmp_path, "select count(*) from llm_calls") == calls
    forced = run_cli("propose", "app", "--reason", "look again")
    assert forced.returncode == 0
    assert count(tmp_path, "select count(*) from llm_calls where purpose = 'patch'") == 2


def test_fixer_that_changes_nothing_proposes_nothing(tmp_path: Path) -> None:
    configure(tmp_path, command="true")
    result = run_cli("propose", "app")
    assert result.returncode == 0 and result.stdout == ""
    assert "changed nothing" in result.stderr


def test_missing_fixer_is_one_line_and_recorded(tmp_path: Path) -> None:
    repo = configure(tmp_path, command=["/nonexistent/fixer"])
    before = fingerprint(repo)
    result = run_cli("propose", "app")
    assert result.returncode == errors.TOOL_FAILED
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: command failed to propose a patch for app: cannot run")
    )
    assert count(tmp_path, "select count(*) from llm_calls where outcome = 'error'") == 1
    assert fingerprint(repo)[2] == before[2]


def test_prompt_carries_the_context_within_budget(tmp_path: Path) -> None:
    log = tmp_path / "prompts.log"
    configure(tmp_path, command=logging_fixer(log))
    assert run_cli("propose", "app", "--reason", "first").returncode == 0
    prompt = log.read_text().split("<<END>>")[0]
    assert "## Why now\n\nfirst" in prompt and "## Project summary" in prompt and "# app" in prompt
    assert len(prompt.encode()) <= 32_000


def test_a_fixer_that_fails_and_changes_nothing_says_why_and_it_is_kept(tmp_path: Path) -> None:
    configure(tmp_path, command="echo 'error: cannot parse ruff.toml: unknown field' >&2; exit 2")
    result = run_cli("propose", "app")
    assert result.returncode == 0 and result.stdout == ""
    assert "changed nothing (it exited 2: error: cannot parse ruff.toml: unknown field)" in result.stderr
    (error,) = database(tmp_path).execute("select error from llm_calls where purpose = 'patch'").fetchone()
    assert error.startswith("exited 2 and changed nothing: ") and "cannot parse ruff.toml" in error


def test_a_fixer_that_is_not_executable_did_not_start(tmp_path: Path) -> None:
    fixer = tmp_path / "fixer.sh"
    fixer.write_text("#!/bin/sh\nexit 0\n")  # mode 0644: the shell finds it but cannot run it (126)
    configure(tmp_path, command=str(fixer))
    result = run_cli("propose", "app")
    assert result.returncode == errors.TOOL_FAILED, result.stderr
    assert "the fixer did not start" in result.stderr and "Permission denied" in result.stderr
