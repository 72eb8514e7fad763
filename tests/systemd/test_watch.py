"""`watch` and `heal`: a failing unit becomes a `failures` row with its journal and a queued heal,
rate-limited per unit, against a real systemd (tests/sandbox.py)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from tests.sandbox import SystemdSandbox
from tests.systemd.project import make_project, pm, query, queued, wait_for, workdir

pytestmark = pytest.mark.systemd

BROKEN = "[Service]\nExecStart=/bin/sh -c 'echo \"fatal: settings file is missing\" >&2; exit 3'\n"


@pytest.fixture
def root() -> Iterator[Path]:
    with workdir("watch") as path:
        yield path


def fail(sandbox: SystemdSandbox, unit: str) -> str:
    """Start a unit that fails at once; wait until systemd has it failed; return its invocation id."""
    sandbox.systemctl("start", unit, check=False)
    wait_for(f"{unit} to fail", lambda: sandbox.systemctl("is-failed", "--quiet", unit, check=False).returncode == 0)
    return sandbox.systemctl("show", "-p", "InvocationID", "--value", unit).stdout.strip()


def test_watch_records_the_failure_with_its_journal_and_queues_a_heal(
    systemd_sandbox: SystemdSandbox, root: Path, record_property: Any
) -> None:
    config = make_project(root, unit="pm-broken.service", extra="[systemd_monitor]\nenabled = true\n")
    systemd_sandbox.write_unit("pm-broken.service", BROKEN)
    done: list[CompletedProcess[str]] = []
    watcher = threading.Thread(target=lambda: done.append(pm(systemd_sandbox, config, "watch", "--for", "6")))
    watcher.start()
    wait_for("the heartbeat", lambda: query(root, "SELECT value FROM status WHERE key = 'systemd.status'") == [
        ("listening",)
    ])  # fmt: skip
    systemd_sandbox.systemctl("start", "pm-broken.service", check=False)
    wait_for("the failures row", lambda: query(root, "SELECT id FROM failures"), every=0.002)
    seen = time.monotonic()  # CLOCK_MONOTONIC is shared with the sandbox (no time namespace)
    show = "ExecMainExitTimestampMonotonic"
    exited = int(systemd_sandbox.systemctl("show", "-p", show, "--value", "pm-broken.service").stdout) / 1e6
    latency = seen - exited
    watcher.join(30)
    (result,) = done
    assert result.returncode == 0, result.stderr
    assert result.stdout == "failure #1 pm-broken.service (exit-code, status 3): heal queued — queued for app\n"
    assert latency < 0.5
    record_property("failure_to_row_s", latency)
    print(f"watch: failure-to-row latency {latency * 1000:.1f} ms")

    (row,) = query(
        root,
        "SELECT project, unit, active_state, result, exit_code, exit_status, length(invocation_id), source, heal, "
        "journal FROM failures",
    )
    assert row[:9] == ("app", "pm-broken.service", "failed", "exit-code", "exited", 3, 32, "watch", "queued")
    assert "fatal: settings file is missing" in row[9]  # the service's own error line
    assert "pm-broken.service: Failed with result 'exit-code'." in row[9]
    (trigger,) = queued(root)
    assert {k: trigger[k] for k in ("project", "kind", "source", "failure_id")} == {
        "project": "app", "kind": "heal", "source": "watch", "failure_id": 1,
    }  # fmt: skip
    beats = dict(query(root, "SELECT key, value FROM status WHERE key LIKE 'systemd.%'"))
    assert beats["systemd.status"] == "stopped"  # --for ran out
    assert json.loads(beats["systemd.units"]) == ["pm-broken.service"]
    assert "systemd.error" not in beats and beats["systemd.last_checked"].startswith("20")
    status = pm(systemd_sandbox, config, "status")
    assert "failure #1 pm-broken.service exit-code" in status.stdout and "(heal: queued)" in status.stdout


def test_heals_are_rate_limited_per_unit(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    window = 15  # long enough for four failures and heals on a loaded machine
    extra = f"[systemd_monitor]\nheal_limit = 3\nheal_window = {window}\ncoalesce = 0\n"  # a row per failure
    config = make_project(root, unit="pm-loop.service", extra=extra)
    systemd_sandbox.write_unit("pm-loop.service", "[Service]\nExecStart=/bin/sh -c 'echo crash-loop >&2; exit 9'\n")
    first = time.monotonic()
    heals = []
    for _ in range(4):
        fail(systemd_sandbox, "pm-loop.service")
        result = pm(systemd_sandbox, config, "heal", "pm-loop.service", "--json")
        assert result.returncode == 0, result.stderr
        heals.append(json.loads(result.stdout)["heal"])
    assert time.monotonic() - first < window, "too slow to test the window"
    assert heals == ["queued", "queued", "queued", "gave_up"]  # a crash loop is not a patch loop
    (trigger,) = queued(root)  # one heal waiting for the project, three requests merged into it
    assert (trigger["kind"], trigger["requests"], trigger["failure_id"]) == ("heal", 3, 3)
    journals = [j for (j,) in query(root, "SELECT journal FROM failures ORDER BY id")]
    assert len(journals) == 4 and all("crash-loop" in j for j in journals)

    again = pm(systemd_sandbox, config, "heal", "pm-loop", "--json")  # the same failure again: not a new one
    assert json.loads(again.stdout)["duplicate"] is True and json.loads(again.stdout)["failure_id"] == 4
    assert query(root, "SELECT count(*) FROM failures") == [(4,)]

    # the first heal leaves the window: it counts from its row's detected_at (a loaded machine starts late)
    ((detected,),) = query(root, "SELECT detected_at FROM failures WHERE id = 1")
    first_at = dt.datetime.fromisoformat(detected.replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, first_at + window + 0.5 - time.time()))
    fail(systemd_sandbox, "pm-loop.service")
    after = pm(systemd_sandbox, config, "heal", "pm-loop.service", "--json")
    assert json.loads(after.stdout)["heal"] == "queued"
    assert queued(root)[0]["failure_id"] == 5


def test_heal_records_units_of_no_project_without_queueing(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root)
    systemd_sandbox.write_unit("pm-orphan.service", BROKEN)
    invocation = fail(systemd_sandbox, "pm-orphan.service")
    result = pm(systemd_sandbox, config, "heal", "pm-orphan.service")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "failure #1 pm-orphan.service (exit-code, status 3): heal none — no configured project has this unit\n"
    )
    assert query(root, "SELECT project, invocation_id, source FROM failures") == [(None, invocation, "on-failure")]
    assert queued(root) == []
    systemd_sandbox.write_unit("pm-fine.service", "[Service]\nExecStart=/bin/sleep infinity\n")
    systemd_sandbox.systemctl("start", "pm-fine.service")
    fine = pm(systemd_sandbox, config, "heal", "pm-fine.service")
    assert (fine.returncode, fine.stdout) == (0, "")
    assert "pm-fine.service has not failed; nothing recorded" in fine.stderr
