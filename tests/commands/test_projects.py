"""`projects`: the configured projects as the configuration resolves them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import make_repo, run_cli, write_config


def test_projects_lists_a_new_config_resolved(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    write_config(tmp_path, f"[[project]]\npath = '{repo}'\ntest = 'true'\n")
    rows = json.loads(run_cli("projects", "--json").stdout)
    assert rows == [
        {
            "name": "app",
            "path": str(repo),
            "unit": "app.service",
            "mode": "push",
            "provider": "codex",
            "test": "true",
            "problem": None,
            "last_run": None,
        }
    ]
