"""What needs no systemd: the OnFailure= environment, the heartbeat's staleness, the units watched."""

from __future__ import annotations

from pathlib import Path

from pimainteno import db, records
from pimainteno.app import App
from pimainteno.commands.heal import event_for, monitored_units
from tests.conftest import run_cli, write_config


def test_on_failure_environment_describes_the_failure(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    env = {
        "MONITOR_UNIT": "app.service", "MONITOR_SERVICE_RESULT": "signal", "MONITOR_EXIT_CODE": "killed",
        "MONITOR_EXIT_STATUS": "TERM", "MONITOR_INVOCATION_ID": "ab" * 16,
    }  # fmt: skip
    event = event_for(App(), "app.service", env)
    assert event is not None
    assert (event.unit, event.active_state, event.result, event.exit_code, event.exit_status, event.invocation_id) == (
        "app.service", "failed", "signal", "killed", 15, "ab" * 16,
    )  # fmt: skip


def test_monitored_units_add_project_units_only_when_enabled(tmp_path: Path) -> None:
    project = f'[[project]]\nname = "app"\npath = "{tmp_path}"\nunit = "app.service"\n'
    write_config(tmp_path, f'[systemd_monitor]\nunits = ["db.service", "app.service"]\n{project}')
    assert monitored_units(App().config) == ["db.service", "app.service"]
    write_config(tmp_path, f'[systemd_monitor]\nenabled = true\nunits = ["db.service"]\n{project}')
    assert monitored_units(App().config) == ["db.service", "app.service"]
    write_config(tmp_path, project)
    assert monitored_units(App().config) == []
    result = run_cli("watch", "--for", "1")
    assert result.returncode == 3 and result.stderr.startswith("Error: nothing to watch:")


def test_status_calls_an_old_heartbeat_stale(tmp_path: Path) -> None:
    write_config(tmp_path, '[systemd_monitor]\nenabled = true\nunits = ["app.service"]\n')
    d = db.open_db(tmp_path / "state" / "pimainteno.db")
    records.set_status(d, "systemd.status", "listening")
    assert "listening (at " in run_cli("status").stdout and "stale" not in run_cli("status").stdout
    d.execute("UPDATE status SET updated_at = '2026-01-01T00:00:00.000Z' WHERE key = 'systemd.status'")
    out = run_cli("status").stdout
    assert "listening (at 2026-01-01T00:00:00.000Z); stale: no heartbeat for over 60s, is the watch running?" in out
