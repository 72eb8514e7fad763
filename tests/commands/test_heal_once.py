"""A heal asks the model once: the patch call's structured answer gives the commit subject, and the
failure, its journal and the last summary are the context (no summary refresh on the way)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pimainteno import db, records
from tests.commands.test_codex_flow import EDIT, calls, configure
from tests.conftest import run_cli, run_git
from tests.modelserver import ModelServer, exec_command, message

pytestmark = pytest.mark.codex


def seed_failure(tmp_path: Path, *, summary: str | None) -> int:
    d = db.open_db(tmp_path / "state" / "pimainteno.db")
    if summary:  # made at an older HEAD: still the context, not refreshed before the fix
        records.add_summary(d, "app", "0" * 40, "codex", summary, None)
    return records.add_failure(d, {
        "project": "app", "unit": "demo-app.service", "active_state": "failed", "result": "exit-code",
        "exit_code": "exited", "exit_status": 1, "source": "watch", "heal": "queued",
        "journal": "Traceback (most recent call last):\nNameError: name 'os' is not defined",
    })  # fmt: skip


def test_a_heal_makes_one_codex_run_and_commits_with_its_subject(tmp_path: Path, codex_bin: Path,
                                                                 codex_home: Path) -> None:  # fmt: skip
    answer = json.dumps({"commit_subject": "Drop the stray os import that breaks start-up", "explanation": "ok"})
    with ModelServer([exec_command(EDIT), message(answer)]) as srv:
        repo = configure(tmp_path, srv, codex_bin)
        failure_id = seed_failure(tmp_path, summary="# app\n\nConverts temperatures (an old summary).")
        result = run_cli("run", "app", "--failure", str(failure_id))
        assert result.returncode == 0, result.stdout + result.stderr
        assert [(r["purpose"], r["outcome"]) for r in calls(tmp_path)] == [("patch", "ok")]  # one codex run
        assert len(srv.requests) == 2  # its two turns: the edit, then the structured answer
        prompt = "\n".join(srv.prompts())
        assert "NameError: name 'os' is not defined" in prompt and "Converts temperatures (an old summary)." in prompt
        assert run_git(repo, "log", "-1", "--format=%s") == "Drop the stray os import that breaks start-up\n"
        assert run_git(tmp_path / "remote.git", "rev-parse", "main") == run_git(repo, "rev-parse", "HEAD")
        d = db.open_db(tmp_path / "state" / "pimainteno.db")
        (steps,) = [json.loads(r["steps"]) for r in d.query("SELECT steps FROM runs")]
        assert [s["step"] for s in steps][:3] == ["still-needed", "propose", "validate"]  # no summarize step


def test_a_malformed_structured_answer_falls_back_to_the_recorded_commit_message_call(
    tmp_path: Path, codex_bin: Path, codex_home: Path
) -> None:
    with ModelServer([exec_command(EDIT), message("{not json"), message("Remove the unused import")]) as srv:
        repo = configure(tmp_path, srv, codex_bin)
        failure_id = seed_failure(tmp_path, summary=None)
        result = run_cli("run", "app", "--failure", str(failure_id))
        assert result.returncode == 0, result.stdout + result.stderr
        assert [(r["purpose"], r["outcome"]) for r in calls(tmp_path)] == [("patch", "ok"), ("commit-message", "ok")]
        assert run_git(repo, "log", "-1", "--format=%s") == "Remove the unused import\n"
        assert any("(no summary yet" in p for p in srv.prompts())
