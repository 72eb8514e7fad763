"""The failure fingerprint that keeps a rolled-back heal from being retried on the same failure."""

from __future__ import annotations

from pathlib import Path

from pimainteno.app import App
from pimainteno.failures import fingerprint, prune, record_failure
from pimainteno.systemd import FailureEvent
from tests.conftest import write_config

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
