"""`status`: recent runs, the queue and model usage, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import make_repo, run_cli, write_config


def test_status_on_a_new_config(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    write_config(tmp_path, f"[[project]]\npath = '{repo}'\ntest = 'true'\n")
    status = run_cli("status", "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert report["runs"] == [] and report["queue"]["pending"] == []
    text = run_cli("status")
    assert "queue      0 pending" in text.stdout and text.returncode == 0


def test_status_shows_runs_and_usage(tmp_path: Path) -> None:
    from pimainteno import db

    write_config(tmp_path, "")
    d = db.open_db(tmp_path / "state" / "pimainteno.db")
    db.insert(
        d, "runs", {"project": "app", "trigger": "hook", "started_at": db.now(), "status": "ok", "duration_s": 1.5}
    )
    db.insert(
        d,
        "llm_calls",
        {
            "project": "app",
            "provider": "codex",
            "purpose": "patch",
            "started_at": db.now(),
            "outcome": "ok",
            "input_tokens": 120,
            "output_tokens": 30,
        },
    )
    out = run_cli("status").stdout
    assert "#1" in out and "ok" in out and "hook" in out
    assert "model calls (24h) app: 1 calls, 0 failed, 120 in / 30 out tokens" in out
