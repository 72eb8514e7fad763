"""A configuration and a database with one project's summary, proposals, runs, failures and calls."""

from __future__ import annotations

import json
from pathlib import Path

from pimainteno import config, db, records

API_KEY = "sk-test-0123456789abcdef"
TOKEN = "web-token-0123456789abcdef"
EVIL_SUMMARY = (
    "# App\n\nA small **service** with `make test`.\n\n<script>alert('summary')</script>\n\n- one\n- two <b>bold?</b>\n"
)
EVIL_DIFF = (
    "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,2 @@\n"
    " import os\n-print('<old>')\n+print('<script>alert(1)</script>')\n"
)
JOURNAL = "app.service: Main process exited, code=exited, status=1/FAILURE\n<img src=x onerror=alert('journal')>\n"


def write_config(tmp_path: Path, *, mode: str = "propose", extra: str = "") -> Path:
    repo = tmp_path / "app"
    repo.mkdir(exist_ok=True)
    path = tmp_path / "PiMainteno.toml"
    path.write_text(
        f'[llm]\napi_key = "{API_KEY}"\n\n[web]\ntoken = "{TOKEN}"\n{extra}\n'
        f'[[project]]\nname = "app"\npath = "{repo}"\nmode = "{mode}"\ntest = "true"\n'
    )
    return path


def seed(config_path: Path) -> Path:
    """The database of that configuration, filled as a few runs would have left it."""
    cfg = config.load(config_path)
    d = db.open_db(cfg.database)
    records.sync_projects(d, cfg.projects, cfg.llm.provider)
    stamp = records.now()
    with db.transaction(d):
        records.insert(d, "summaries", {"project": "app", "head": "a" * 40, "created_at": stamp, "provider": "command",
                                   "text": EVIL_SUMMARY})  # fmt: skip
        steps = [{"step": "summarize", "outcome": "ok", "seconds": 0.4, "detail": None},
                 {"step": "propose", "outcome": "ok", "seconds": 2.5, "detail": "1 file"},
                 {"step": "validate", "outcome": "ok", "seconds": 1.0, "detail": "tests passed"}]  # fmt: skip
        run1 = records.insert(d, "runs", {"project": "app", "trigger": "timer", "started_at": stamp, "finished_at": stamp,
                                     "duration_s": 3.9, "status": "ok", "step": "push", "steps": steps,
                                     "commit_sha": "b" * 40})  # fmt: skip
        records.insert(d, "proposals", {"project": "app", "run_id": run1, "created_at": stamp, "status": "committed",
                                   "provider": "command", "files": ["app.py"], "added": 1, "removed": 1,
                                   "diff": EVIL_DIFF})  # fmt: skip
        records.insert(d, "proposals", {"project": "app", "run_id": run1, "created_at": records.now(), "status": "proposed",
                                   "provider": "command", "reason": "tests fail", "files": ["app.py"], "added": 1,
                                   "removed": 1, "diff": EVIL_DIFF.replace("alert(1)", "alert(2)")})  # fmt: skip
        records.insert(d, "commits", {"project": "app", "run_id": run1, "proposal_id": 1, "sha": "b" * 40,
                                 "message": "Fix the <greeting> output", "created_at": stamp, "pushed_at": stamp,
                                 "push_ref": "origin/main"})  # fmt: skip
        records.insert(d, "failures", {"project": "app", "unit": "app.service", "detected_at": stamp, "result": "exit-code",
                                  "exit_status": 1, "journal": JOURNAL, "source": "watch", "heal": "queued"})  # fmt: skip
        records.insert(d, "llm_calls", {"project": "app", "run_id": run1, "provider": "codex", "purpose": "patch",
                                   "started_at": stamp, "duration_s": 2.5, "outcome": "failed", "input_tokens": 1200,
                                   "output_tokens": 300, "error": f"401 for key {API_KEY}"})  # fmt: skip
        records.insert(d, "llm_calls", {"project": "app", "run_id": run1, "provider": "command", "purpose": "patch",
                                   "started_at": stamp, "duration_s": 0.1, "outcome": "ok", "exit_status": 0})  # fmt: skip
        records.set_status(d, "scheduler.status", "ok: next run 03:00")
        records.set_status(d, "systemd.status", "watching 1 unit")
        records.set_status(d, "systemd.last_checked", stamp)
    d.conn.close()
    return cfg.database


def pending(queue_dir: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(queue_dir.glob("*.json"))] if queue_dir.is_dir() else []
