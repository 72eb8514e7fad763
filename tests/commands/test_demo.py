"""`demo`: the offline end-to-end demonstration (the README's first command)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.commands.project import (
    PY,
)
from tests.conftest import run_git


def test_demo_runs_offline(tmp_path: Path) -> None:
    argv = [PY, "-m", "pimainteno", "demo", str(tmp_path / "demo")]
    if os.geteuid() == 0 and Path("/usr/bin/unshare").exists():
        argv = ["unshare", "--net", *argv]  # prove it needs no network
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Result: demo-app: ok" in result.stdout and "-import os" in result.stdout
    remote = tmp_path / "demo" / "remote.git"
    assert run_git(remote, "log", "-1", "--format=%s", "main").startswith("Apply ruff fixes")
