"""pimainteno.systemd against a real systemd, booted in namespaces by tests/sandbox.py.

The library runs *inside* the sandbox (``sandbox.python``): systemd's sockets are in the
sandbox's private /run. Each test uses its own unit names; one sandbox serves the module.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pimainteno import errors
from tests.conftest import make_repo, run_cli
from tests.sandbox import REPO, SystemdSandbox, unavailable_reason

pytest_plugins = ["tests.conftest_systemd"]
pytestmark = pytest.mark.systemd

FAILING = "[Service]\nExecStart=/bin/sh -c 'echo boom-marker >&2; exit 7'\n"

RESTART = """
import dataclasses, json, sys
from pimainteno.systemd import restart_and_wait
result = restart_and_wait(sys.argv[1], settle=float(sys.argv[2]), timeout=30)
print(json.dumps(dataclasses.asdict(result)))
"""

# Starts UNIT from another thread once the watch is set up (first heartbeat), stops at the first
# non-swept failure, and measures the delay from the main process's exit to the callback.
WATCH = """
import dataclasses, json, logging, subprocess, sys, threading, time
from pimainteno.systemd import journal_excerpt, watch_failures
unit, action = sys.argv[1], sys.argv[2]
ready, events, beats, logged = threading.Event(), [], [], []
logging.basicConfig(level=logging.INFO, handlers=[logging.StreamHandler()])
logging.getLogger().handlers[0].emit = lambda record: logged.append(record.getMessage())

class Done(Exception):
    pass

def trigger():
    ready.wait()
    if action == "reexec":  # drops the watch's connection: it must reconnect, then still catch the failure
        subprocess.run(["systemctl", "daemon-reexec"], check=True)
        time.sleep(0.5)
    if action == "create":
        with open(f"/run/systemd/system/{unit}", "w") as f:
            f.write(sys.argv[3])
        subprocess.run(["systemctl", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "start", "--no-block", unit], check=True)

def heartbeat():
    beats.append(time.monotonic())
    ready.set()

def on_failure(event):
    events.append((dataclasses.asdict(event), time.monotonic()))
    if not event.swept:
        raise Done

threading.Thread(target=trigger, daemon=True).start()
try:
    watch_failures([unit, "pm-not-there.service"], on_failure, stop_after=20, heartbeat=heartbeat, heartbeat_every=0.05)
except Done:
    pass
event, called = events[-1]
show = subprocess.run(
    ["systemctl", "show", "-p", "ExecMainExitTimestampMonotonic", "-p", "StateChangeTimestampMonotonic", unit],
    capture_output=True, text=True, check=True,
).stdout
stamps = {k: int(v) / 1e6 for k, v in (line.split("=", 1) for line in show.split())}
found = time.monotonic()
while True:  # journald may store the dying process's output a little after the failure
    journal = journal_excerpt(unit, invocation_id=event["invocation_id"])
    if "boom-marker" in journal or time.monotonic() - found > 5:
        break
    time.sleep(0.02)
print(json.dumps({
    "events": [e for e, _ in events], "beats": len(beats), "journal": journal, "logged": logged,
    "journal_wait": time.monotonic() - found,
    "latency_from_exit": called - stamps["ExecMainExitTimestampMonotonic"],
    "latency_from_failed_state": called - stamps["StateChangeTimestampMonotonic"],
}))
"""


def inside(sandbox: SystemdSandbox, code: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in the sandbox with the project's Python; it prints one JSON document last."""
    result = sandbox.python(["-c", textwrap.dedent(code), *args], check=False, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def fail_unit(sandbox: SystemdSandbox, unit: str) -> None:
    """Start the failing unit and wait until systemd has it in the failed state."""
    sandbox.write_unit(unit, FAILING)
    sandbox.systemctl("start", unit, check=False)
    for _ in range(100):
        if sandbox.systemctl("is-failed", "--quiet", unit, check=False).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{unit} did not fail")


def restart(sandbox: SystemdSandbox, unit: str, text: str, settle: float) -> dict[str, Any]:
    sandbox.write_unit(unit, text)
    return inside(sandbox, RESTART, unit, str(settle))


def test_import_is_cheap_and_does_not_load_pystemd() -> None:
    code = "import json, sys, pimainteno.systemd; print(json.dumps(sorted(m for m in sys.modules if 'pystemd' in m)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_unreachable_manager_is_a_one_line_tool_error(tmp_path: Path) -> None:
    code = """
    import json
    from pimainteno.errors import ToolError
    from pimainteno.systemd import unit_state
    try:
        unit_state("x.service", user=True)
    except ToolError as exc:
        print(json.dumps([exc.exit_code, str(exc)]))
    """
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"} | {"XDG_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True, text=True
    )
    exit_code, message = json.loads(out.stdout)
    assert exit_code == 4 and "\n" not in message
    assert message.startswith("cannot reach the systemd user manager over D-Bus")


def test_restart_healthy_simple_service(systemd_sandbox: SystemdSandbox) -> None:
    result = restart(systemd_sandbox, "pm-sleep.service", "[Service]\nExecStart=/bin/sleep infinity\n", settle=2)
    assert result["healthy"] is True, result
    assert (result["active_state"], result["sub_state"], result["job_result"]) == ("active", "running", "done")
    assert 2 <= result["duration_s"] < 10
    assert len(result["invocation_id"]) == 32


def test_restart_reports_a_service_dying_during_settle(systemd_sandbox: SystemdSandbox) -> None:
    unit = "[Service]\nExecStart=/bin/sh -c 'sleep 2; exit 3'\n"
    result = restart(systemd_sandbox, "pm-dies.service", unit, settle=4)
    assert result["healthy"] is False, result
    assert (result["active_state"], result["result"], result["exec_main_status"]) == ("failed", "exit-code", 3)
    assert 1.5 < result["duration_s"] < 3.5  # reported when it died, not at the end of the settle time
    assert "exit-code" in result["detail"] and "status 3" in result["detail"]


@pytest.mark.parametrize(
    ("command", "healthy", "result", "status"),
    [("/bin/true", True, "success", 0), ("/bin/false", False, "exit-code", 1)],
)
def test_restart_oneshot(
    systemd_sandbox: SystemdSandbox, command: str, healthy: bool, result: str, status: int
) -> None:
    unit = f"pm-oneshot-{healthy}.service".lower()
    got = restart(systemd_sandbox, unit, f"[Service]\nType=oneshot\nExecStart={command}\n", settle=4)
    assert (got["healthy"], got["result"], got["exec_main_status"]) == (healthy, result, status), got
    assert got["job_result"] == ("done" if healthy else "failed")
    assert got["duration_s"] < 2  # no settle time for a oneshot


def test_restart_resets_the_start_limit_and_tells_it_from_a_crash(systemd_sandbox: SystemdSandbox) -> None:
    flag = "/run/pm-limited-fixed"  # the sandbox's private /run
    unit = (
        f"[Service]\nExecStart=/bin/sh -c 'test -e {flag} || exit 1; exec sleep infinity'\n"
        "Restart=on-failure\nRestartSec=100ms\n"
    )
    systemd_sandbox.write_unit("pm-limited.service", unit)
    systemd_sandbox.systemctl("start", "pm-limited.service", check=False)
    deadline = time.monotonic() + 20  # 5 starts in 10 s (the default), then systemd gives up: failed
    while systemd_sandbox.systemctl("is-failed", "--quiet", "pm-limited.service", check=False).returncode != 0:
        assert time.monotonic() < deadline, "pm-limited.service never hit its start limit"
        time.sleep(0.05)
    refused = systemd_sandbox.systemctl("start", "pm-limited.service", check=False)  # what a plain start gets
    journal = systemd_sandbox.run(["journalctl", "-u", "pm-limited.service", "-o", "cat"]).stdout
    assert refused.returncode == 1 and journal.count("Start request repeated too quickly") == 2, journal
    # Still broken: the restart is not refused (the counter was reset), the unit crashes again:
    # unhealthy, and not "start-limited" even though it ends at its start limit once more.
    broken = inside(systemd_sandbox, RESTART, "pm-limited.service", "3")
    assert (broken["healthy"], broken["start_limited"], broken["job_result"]) == (False, False, "done"), broken
    systemd_sandbox.run(["touch", flag])
    fixed = inside(systemd_sandbox, RESTART, "pm-limited.service", "1")
    assert (fixed["healthy"], fixed["start_limited"], fixed["active_state"]) == (True, False, "active"), fixed
    systemd_sandbox.systemctl("stop", "pm-limited.service")


def test_a_start_refused_by_the_start_limit_is_told_apart() -> None:
    from pimainteno.systemd import refused_by_start_limit

    before = "0f" * 16
    assert refused_by_start_limit("failed", {"Result": "start-limit-hit", "InvocationID": "1a" * 16}, before)
    assert refused_by_start_limit("failed", {"Result": "exit-code", "InvocationID": before}, before)  # systemd 252
    assert not refused_by_start_limit("done", {"Result": "start-limit-hit", "InvocationID": before}, before)
    assert not refused_by_start_limit("failed", {"Result": "exit-code", "InvocationID": "1a" * 16}, before)  # it ran


def test_restart_missing_unit_is_a_tool_error(systemd_sandbox: SystemdSandbox) -> None:
    code = """
    import json
    from pimainteno.errors import ToolError
    from pimainteno.systemd import restart_and_wait
    try:
        restart_and_wait("pm-missing.service")
    except ToolError as exc:
        print(json.dumps([exc.exit_code, str(exc)]))
    """
    assert inside(systemd_sandbox, code) == [4, "systemd has no unit pm-missing.service"]


def test_unit_state_of_a_failed_unit(systemd_sandbox: SystemdSandbox) -> None:
    fail_unit(systemd_sandbox, "pm-state.service")
    state = inside(
        systemd_sandbox,
        "import json; from pimainteno.systemd import *; print(json.dumps(unit_state('pm-state.service')))",
    )
    assert {k: state[k] for k in ("ActiveState", "SubState", "Result", "ExecMainStatus", "ExecMainCode", "Type")} == {
        "ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
        "ExecMainStatus": 7, "ExecMainCode": "exited", "Type": "simple",
    }  # fmt: skip
    assert len(state["InvocationID"]) == 32


@pytest.mark.parametrize("bus", ["private", "bus"])
def test_watch_catches_a_failure_within_milliseconds(
    systemd_sandbox: SystemdSandbox, bus: str, record_property: Any
) -> None:
    unit = f"pm-boom-{bus}.service"
    systemd_sandbox.write_unit(unit, FAILING)
    got = inside(systemd_sandbox, WATCH, unit, "start", env={"PIMAINTENO_SYSTEMD_BUS": bus})
    event = got["events"][-1]
    assert (event["unit"], event["active_state"], event["result"]) == (unit, "failed", "exit-code")
    assert (event["exit_code"], event["exit_status"], event["swept"]) == ("exited", 7, False)
    assert "boom-marker" in got["journal"]
    assert f"{unit}: Failed with result 'exit-code'" in got["journal"]
    assert got["latency_from_exit"] < 1.0
    record_property("latency_from_exit_s", got["latency_from_exit"])
    record_property("journal_wait_s", got["journal_wait"])
    print(
        f"{bus}: exit->callback {got['latency_from_exit'] * 1000:.1f} ms, journal after {got['journal_wait'] * 1000:.0f} ms"
    )


def test_watch_sweep_reports_a_unit_failed_before_the_watch(systemd_sandbox: SystemdSandbox) -> None:
    fail_unit(systemd_sandbox, "pm-early.service")
    code = """
    import dataclasses, json
    from pimainteno.systemd import watch_failures
    events = []
    watch_failures(["pm-early.service", "pm-not-there.service"], lambda e: events.append(dataclasses.asdict(e)), stop_after=0.5)
    print(json.dumps(events))
    """
    (event,) = inside(systemd_sandbox, code)
    assert (event["unit"], event["swept"], event["result"], event["exit_status"]) == (
        "pm-early.service",
        True,
        "exit-code",
        7,
    )


def test_watch_a_unit_that_does_not_exist_yet(systemd_sandbox: SystemdSandbox) -> None:
    got = inside(systemd_sandbox, WATCH, "pm-later.service", "create", FAILING)
    event = got["events"][-1]
    assert (event["unit"], event["exit_status"], event["swept"]) == ("pm-later.service", 7, False)


def test_watch_reconnects_after_daemon_reexec(systemd_sandbox: SystemdSandbox) -> None:
    systemd_sandbox.write_unit("pm-reexec.service", FAILING)
    got = inside(systemd_sandbox, WATCH, "pm-reexec.service", "reexec")
    event = got["events"][-1]
    assert (event["unit"], event["exit_status"], event["swept"]) == ("pm-reexec.service", 7, False)
    assert any("reconnecting" in line for line in got["logged"]), got["logged"]


def test_watch_says_it_listens_as_soon_as_the_matches_are_in_place(systemd_sandbox: SystemdSandbox) -> None:
    code = """
    import json, time
    from pimainteno.systemd import watch_failures
    began, calls = time.monotonic(), []
    watch_failures(["pm-listen.service"], lambda event: None, stop_after=2, heartbeat_every=60,
                   heartbeat=lambda: calls.append(("heartbeat", time.monotonic() - began)),
                   on_listening=lambda: calls.append(("listening", time.monotonic() - began)))
    print(json.dumps(calls))
    """
    calls = inside(systemd_sandbox, code)
    assert [name for name, _ in calls] == ["listening"]  # once, long before the first heartbeat is due
    assert calls[0][1] < 1.0


def test_the_watch_command_says_listening_without_waiting_for_a_heartbeat(
    systemd_sandbox: SystemdSandbox, tmp_path: Path
) -> None:
    config = tmp_path / "PiMainteno.toml"
    state = tmp_path / "state"
    config.write_text(f'[state]\ndir = "{state}"\n\n[systemd_monitor]\nunits = ["pm-listen2.service"]\n')
    argv = ["-m", "pimainteno", "--config", str(config), "watch", "--for", "5"]
    done: list[subprocess.CompletedProcess[str]] = []
    began = time.monotonic()
    watcher = threading.Thread(target=lambda: done.append(systemd_sandbox.python(argv, check=False, timeout=30)))
    watcher.start()
    status: list[tuple[str, float]] = []
    while watcher.is_alive() and not (status and status[-1][0] == "listening"):
        if (state / "pimainteno.db").exists():
            with contextlib.closing(sqlite3.connect(state / "pimainteno.db", timeout=5)) as db:
                rows = db.execute("SELECT value FROM status WHERE key = 'systemd.status'").fetchall()
            status += [(row[0], time.monotonic() - began) for row in rows]
        time.sleep(0.02)
    watcher.join(30)
    assert done and done[0].returncode == 0, done and done[0].stderr
    assert status and status[-1][0] == "listening", status
    assert status[-1][1] < 4  # the heartbeat comes every 5 s: "listening" did not wait for it


def test_journal_excerpt_keeps_the_newest_within_max_bytes(systemd_sandbox: SystemdSandbox) -> None:
    script = "for i in $(seq 1 200); do echo line-$i; done; printf 'bad-\\377\\376-bytes\\n'"
    systemd_sandbox.write_unit("pm-chatty.service", f'[Service]\nType=oneshot\nExecStart=/bin/sh -c "{script}"\n')
    systemd_sandbox.systemctl("start", "pm-chatty.service")
    code = """
    import json
    from pimainteno.systemd import journal_excerpt
    print(json.dumps([journal_excerpt("pm-chatty.service", lines=50, max_bytes=600), journal_excerpt("pm-chatty.service", lines=5)]))
    """
    for _ in range(50):  # until journald has stored the last line
        bounded, recent = inside(systemd_sandbox, code)
        if "bad-" in recent:
            break
        time.sleep(0.1)
    assert len(bounded.encode()) <= 600
    assert bounded.startswith("[") and "earlier lines cut]" in bounded.splitlines()[0]
    assert "line-200" in bounded and "line-150" not in bounded
    assert "sh[" in recent and "bad-\ufffd\ufffd-bytes" in recent  # not UTF-8: MESSAGE came as a byte list


def test_journal_excerpt_adds_a_runs_unattributed_last_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """journald sometimes stores a dying process's last line without _SYSTEMD_INVOCATION_ID (seen
    in 7% of runs of an instantly failing unit); a scripted journalctl replays such a journal."""
    a, b = "a" * 32, "b" * 32
    entries = [
        {"MESSAGE": "Started x.service.", "INVOCATION_ID": a, "_PID": "1", "SYSLOG_IDENTIFIER": "systemd"},
        {"MESSAGE": "output of run a", "_SYSTEMD_INVOCATION_ID": a, "_PID": "10", "SYSLOG_IDENTIFIER": "sh"},
        {"MESSAGE": "Started x.service.", "INVOCATION_ID": b, "_PID": "1", "SYSLOG_IDENTIFIER": "systemd"},
        {"MESSAGE": [98, 255, 97], "_SYSTEMD_INVOCATION_ID": b, "_PID": "11", "SYSLOG_IDENTIFIER": "sh"},
        {"MESSAGE": "x.service: Failed with result 'exit-code'.", "INVOCATION_ID": b, "_PID": "1"},
        {"MESSAGE": "boom-marker", "_PID": "11", "SYSLOG_IDENTIFIER": "sh", "__REALTIME_TIMESTAMP": "1795487346790456"},
    ]
    (tmp_path / "journal.json").write_text("".join(json.dumps(e) + "\n" for e in entries))
    fake = tmp_path / "journalctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/argv\ncat {tmp_path}/journal.json\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    from pimainteno.systemd import journal_excerpt

    assert journal_excerpt("x.service", invocation_id=b).splitlines() == [
        "systemd[1]: Started x.service.",
        "sh[11]: b\ufffda",
        "?[1]: x.service: Failed with result 'exit-code'.",
        "2026-11-24T02:29:06Z sh[11]: boom-marker",
    ]
    assert (tmp_path / "argv").read_text() == "-u x.service -n 400 -o json --all --no-pager\n"


def test_sandbox_boots_fast_and_leaves_nothing_behind() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    dev_before = sorted(os.listdir("/dev"))
    with SystemdSandbox() as sandbox:
        assert sandbox.system_state in ("running", "degraded")
        assert sandbox.failed_units() == []
        assert sandbox.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
        pid, cgroup = sandbox.pid, sandbox._cgroup
        print(f"sandbox boot {sandbox.boot_seconds:.2f}s")
        assert sandbox.boot_seconds is not None and sandbox.boot_seconds < 5
    assert sandbox.leftover_pids == []
    assert not Path(f"/proc/{pid}").exists()
    assert cgroup is not None and not cgroup.exists()
    assert sorted(os.listdir("/dev")) == dev_before  # e.g. no /dev/log symlink left on the host


def test_install_systemd_enable_without_systemd_writes_nothing(tmp_path: Path) -> None:
    from pimainteno.commands.install_systemd import systemd_missing

    if systemd_missing(user=False) is None:
        pytest.skip("systemd runs on this machine: the refusal is for machines without it")
    repo = make_repo(tmp_path / "app")
    (tmp_path / "PiMainteno.toml").write_text(f'[[project]]\npath = "{repo}"\n')
    result = run_cli("install-systemd", "--enable", "--unit-dir", str(tmp_path / "units"))
    assert result.returncode == errors.TOOL_FAILED
    assert result.stderr.startswith("Error: systemd is not running on this machine: nothing written")
    assert not (tmp_path / "units").exists()
