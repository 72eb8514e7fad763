"""The failure fingerprint that keeps a rolled-back heal from being retried on the same failure."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from pimainteno import records
from pimainteno.app import App
from pimainteno.failures import fingerprint, prune, record_failure
from pimainteno.systemd import FailureEvent
from tests.conftest import make_repo, write_config

CRASH = """\
Nov 30 08:01:02 host python[4242]: Traceback (most recent call last):
Nov 30 08:01:02 host python[4242]:   File "/srv/app/serve.py", line 3, in <module>
Nov 30 08:01:02 host python[4242]: SystemExit: fatal: settings file is missing
Nov 30 08:01:02 host systemd[1]: app.service: Main process exited, code=exited, status=1/FAILURE
Nov 30 08:01:02 host systemd[1]: app.service: Failed with result 'exit-code'.
"""


def test_the_same_crash_later_has_the_same_fingerprint() -> None:
    later = CRASH.replace("08:01:02", "09:17:45").replace("4242", "5313")
    iso = CRASH.replace("Nov 30 08:01:02", "2026-11-30T08:01:02Z")
    assert fingerprint(iso.replace(":02Z", ":47Z")) == fingerprint(iso)  # journal's ISO stamps too
    assert fingerprint(later) == fingerprint(CRASH)
    assert "settings file is missing" in fingerprint(CRASH) and "4242" not in fingerprint(CRASH)


def test_a_different_crash_has_another_fingerprint() -> None:
    other = CRASH.replace("settings file is missing", "cannot bind the port")
    assert fingerprint(other) != fingerprint(CRASH)


def test_only_the_last_lines_count() -> None:
    noisy = "".join(f"Nov 30 07:00:0{i} host python[1]: warming up item {i}\n" for i in range(9)) + CRASH
    assert fingerprint(noisy) == fingerprint(CRASH)
    assert fingerprint(None) == fingerprint("") == ""


def event(invocation: str) -> FailureEvent:
    return FailureEvent(unit="pm-x.service", active_state="failed", sub_state="failed", result="exit-code",
                        exit_code="exited", exit_status=1, invocation_id=invocation, detected_at=0.0,
                        detected_wall="")  # fmt: skip


def test_repeated_failures_within_the_window_are_one_row_and_old_rows_are_pruned(tmp_path: Path) -> None:
    write_config(tmp_path, '[systemd_monitor]\nunits = ["pm-x.service"]\ncoalesce = 60\nretention_days = 1\n')
    app = App()
    first = record_failure(app, event("a" * 32), source="watch")
    again = [record_failure(app, event(c * 32), source="watch") for c in "bcd"]
    assert {r.failure_id for r in again} == {first.failure_id}
    assert "4 times since" in again[-1].detail
    (row,) = app.db.execute("SELECT count, invocation_id, last_at >= detected_at FROM failures").fetchall()
    assert row == (4, "d" * 32, 1)
    assert record_failure(app, event("d" * 32), source="on-failure").duplicate  # the same failure seen twice

    app.db.execute("UPDATE failures SET detected_at = '2020-01-01T00:00:00.000Z', last_at = NULL")
    assert prune(app) == 1
    assert app.db.execute("SELECT count(*) FROM failures").fetchone() == (0,)
    fresh = record_failure(app, event("e" * 32), source="watch")  # a new row, counted from one again
    assert "times since" not in fresh.detail
    assert app.db.execute("SELECT count, invocation_id FROM failures").fetchall() == [(1, "e" * 32)]


def test_a_failure_within_a_runs_restart_is_the_runs_even_when_seen_after_the_check(tmp_path: Path) -> None:
    """The watcher can see a crash after the restarting run's check has already ended (a loaded machine):
    systemd's time of the failure, not the time it is recorded, says whose it is."""
    repo = make_repo(tmp_path / "app")
    write_config(tmp_path, f'[[project]]\nname = "app"\npath = "{repo}"\nunit = "pm-x.service"\n')
    app = App()
    run_id = records.start_run(app.db, project="app", trigger="manual")
    records.announce_restart(app.db, "pm-x.service", run_id, time.time() + 60)
    crashed = time.time()
    assert records.restarting_run(app.db, "pm-x.service") == run_id
    records.end_restart(app.db, "pm-x.service")
    later = time.time() + 1
    assert records.restarting_run(app.db, "pm-x.service", at=crashed) == run_id  # seen late: still the run's
    assert records.restarting_run(app.db, "pm-x.service", at=later) is None  # after the check: a new failure
    assert records.restarting_run(app.db, "pm-x.service", at=crashed - 60) is None  # before the restart
    late = record_failure(app, FailureEvent(**{**event("f" * 32).__dict__, "failed_at": crashed}), source="watch")
    assert (late.heal, app.db.execute("SELECT run_id FROM failures").fetchone()) == ("run", (run_id,))
    fresh = record_failure(app, FailureEvent(**{**event("a" * 32).__dict__, "failed_at": later}), source="watch")
    assert fresh.heal == "queued"


def test_a_restart_whose_run_died_owns_no_failure(tmp_path: Path) -> None:
    write_config(tmp_path, '[systemd_monitor]\nunits = ["pm-x.service"]\n')
    app = App()
    run_id = records.start_run(app.db, project="app", trigger="manual")
    records.update_run(app.db, run_id, pid=2**22 + 1)  # above pid_max: no such process
    records.announce_restart(app.db, "pm-x.service", run_id, time.time() + 60)
    assert records.restarting_run(app.db, "pm-x.service") is None


def test_the_window_ends_at_the_verdict_and_a_second_restart_of_the_run_widens_it(tmp_path: Path) -> None:
    write_config(tmp_path, '[systemd_monitor]\nunits = ["pm-x.service"]\n')
    app = App()
    run_id = records.start_run(app.db, project="app", trigger="manual")
    records.announce_restart(app.db, "pm-x.service", run_id, time.time() + 60)
    first_crash = time.time()
    verdict = first_crash + 1
    records.end_restart(app.db, "pm-x.service", at=verdict)  # written later than the verdict (a busy database)
    assert records.restarting_run(app.db, "pm-x.service", at=verdict + 0.5) is None  # after the verdict: new
    # the run rolls back and restarts again: the first restart's crash, seen only now, is still the run's
    records.announce_restart(app.db, "pm-x.service", run_id, time.time() + 60)
    assert records.restarting_run(app.db, "pm-x.service", at=first_crash) == run_id
    other = records.start_run(app.db, project="app", trigger="manual")  # another run: its own window
    records.announce_restart(app.db, "pm-x.service", other, time.time() + 60)
    assert records.restarting_run(app.db, "pm-x.service", at=first_crash) is None


def test_a_restart_without_a_verdict_claims_nothing(tmp_path: Path, monkeypatch) -> None:
    """A D-Bus error or SIGTERM during the restart check: a failure seen afterwards is healed, not the run's."""
    import pytest

    from pimainteno.errors import ToolError

    restarting = importlib.import_module("pimainteno.pipeline.restart")  # the package's `restart` is the function

    repo = make_repo(tmp_path / "app")
    write_config(tmp_path, f'[[project]]\nname = "app"\npath = "{repo}"\nunit = "pm-x.service"\n')
    app = App()
    run_id = records.start_run(app.db, project="app", trigger="manual")

    def no_verdict(*args: object, **kw: object) -> None:
        assert records.restarting_run(app.db, "pm-x.service") == run_id  # announced while it restarts
        raise ToolError("systemd went away")

    monkeypatch.setattr(restarting, "restart", no_verdict)
    with pytest.raises(ToolError):
        restarting._restart(app, app.config.project("app"), run_id)
    assert records.restarting_run(app.db, "pm-x.service") is None
    assert records.status_value(app.db, records.RESTARTING + "pm-x.service") is None


def test_on_failure_dates_a_failure_only_by_its_own_invocation(tmp_path: Path, monkeypatch) -> None:
    from pimainteno import failures, systemd

    write_config(tmp_path, '[systemd_monitor]\nunits = ["pm-x.service"]\n')
    app = App()
    state = {"InvocationID": "b" * 32, "FailedAt": 1234.5}
    monkeypatch.setattr(systemd, "unit_state", lambda unit, user=False: state)
    assert failures._failed_at(app, "pm-x.service", "b" * 32) == 1234.5
    assert failures._failed_at(app, "pm-x.service", "a" * 32) == 0.0  # started again since: not this failure's time
    assert failures._failed_at(app, "pm-x.service", "") == 0.0
