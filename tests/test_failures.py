"""The failure fingerprint that keeps a rolled-back heal from being retried on the same failure."""

from __future__ import annotations

from pimainteno.failures import fingerprint

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
