"""`init` on the host (PIMAINTENO_CONFIG); tests/commands/test_onboard.py covers init with add and remove."""

from __future__ import annotations

from pathlib import Path

from pimainteno import config
from tests.conftest import run_cli


def test_init_writes_a_config_that_loads_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "PiMainteno.toml"
    first = run_cli("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    cfg = config.load(target)
    assert cfg.projects == () and cfg.database.exists()
    before = target.read_bytes()
    again = run_cli("init", cwd=tmp_path)
    assert again.returncode == 0 and f"kept the existing configuration {target}" in again.stderr
    assert target.read_bytes() == before
