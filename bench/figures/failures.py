"""Failure detection: a unit's failure to its `failures` row, in a throwaway systemd (tests/sandbox.py).

Measured: the real `pimainteno watch` inside the sandbox, watched from outside it (a poll of the
database for the new row). Reference: what it is built on, `pimainteno.systemd.watch_failures`,
with a bare insert in its callback. Each time is from systemd's record of the main process's exit
(ExecMainExitTimestampMonotonic; CLOCK_MONOTONIC is shared with the sandbox).
"""

from __future__ import annotations

import json
import os
import statistics
import textwrap
from typing import TYPE_CHECKING, Any

from bench.common import Row, Workspace, ms, progress, verdict, workspace

FAILURES = 20
UNIT = "bench-fail.service"
# No start limit: twenty failures in a few seconds would otherwise end in start-limit-hit.
UNIT_TEXT = "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sh -c 'echo bench-boom >&2; exit 7'\n"
TARGET = "median <= 100 ms, worst <= 1 s"

if TYPE_CHECKING:
    from tests.sandbox import SystemdSandbox

# Shared by both drivers (they run inside the sandbox).
COMMON = """
import json, os, sqlite3, subprocess, sys, threading, time
unit, count, db_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def show(*names):
    out = subprocess.run(["systemctl", "show", *(f"-p{n}" for n in names), unit], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

def fail_once():
    subprocess.run(["systemctl", "start", unit], capture_output=True)  # starts; the process exits 7 at once
"""

# The real command: `pimainteno watch` in the background; each failure waits until the previous
# one is fully handled (journal added), so every figure is one failure on an idle watch.
WATCH_DRIVER = (
    COMMON
    + """
watch = subprocess.Popen([sys.executable, "-m", "pimainteno", "-q", "watch", "--for", str(count * 5 + 30)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
conn = sqlite3.connect(db_path, timeout=10)

def newest():
    return conn.execute("select id, invocation_id, source, journal is not null from failures order by id desc limit 1").fetchone()

def wait_row(after, settled=False, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            row = newest()
        except sqlite3.OperationalError:  # the watch has not created the database yet
            row = None
        if row and row[0] > after and (row[3] or not settled):
            return row, time.monotonic()
        time.sleep(0.001)
    raise SystemExit(f"no failures row within {limit}s; watch said: {watch.stderr.read() if watch.poll() is not None else ''}")

fail_once()  # warm-up: its row (signal or sweep) proves the subscription is in place
(last, *_), _ = wait_row(0, settled=True, limit=30)
first, results, errors = last, [], []
for _ in range(count):
    fail_once()
    row, seen = wait_row(last)
    state = show("InvocationID", "ExecMainExitTimestampMonotonic")
    if row[1] != state["InvocationID"] or row[2] != "watch":
        errors.append(f"row {row} is not the failure of invocation {state['InvocationID']}")
    results.append(seen - int(state["ExecMainExitTimestampMonotonic"]) / 1e6)
    (last, *_), _ = wait_row(last - 1, settled=True)
watch.terminate()
watch.wait(timeout=30)
rows = conn.execute("select count(*) from failures where source = 'watch' and id > ?", [first]).fetchone()[0]
print(json.dumps({"results": results, "errors": errors, "rows": rows}))
"""
)

# The reference: watch_failures with a bare insert in the callback, timed when the row is committed.
BARE_DRIVER = (
    COMMON
    + """
from pimainteno import db as dbm
from pimainteno import records
from pimainteno.systemd import watch_failures
d = dbm.open_db(db_path)
ready, seen = threading.Event(), {}

class Done(Exception):
    pass

def on_failure(event):
    if event.swept:
        return
    with dbm.transaction(d):
        records.insert(d, "failures", {"unit": event.unit, "detected_at": records.now(), "result": event.result,
                                   "exit_status": event.exit_status, "invocation_id": event.invocation_id,
                                   "source": "bare"})
    seen[event.invocation_id] = time.monotonic()
    if len(seen) >= count:
        raise Done

results = []
def trigger():
    ready.wait()
    for _ in range(count):
        before = len(seen)
        fail_once()
        deadline = time.monotonic() + 5
        while len(seen) == before and time.monotonic() < deadline:
            time.sleep(0.001)
        state = show("InvocationID", "ExecMainExitTimestampMonotonic")
        if state["InvocationID"] in seen:
            results.append(seen[state["InvocationID"]] - int(state["ExecMainExitTimestampMonotonic"]) / 1e6)

thread = threading.Thread(target=trigger, daemon=True)
thread.start()
try:
    watch_failures([unit], on_failure, stop_after=count * 5 + 10, heartbeat=ready.set, heartbeat_every=0.05)
except Done:
    pass
thread.join(timeout=10)
print(json.dumps({"results": results}))
"""
)


def drive(sandbox: SystemdSandbox, ws: Workspace, code: str, db: str) -> dict[str, Any]:
    """Run a driver inside the sandbox (the workspace's configuration and state); its JSON report."""
    got = sandbox.python(
        ["-c", textwrap.dedent(code), UNIT, str(FAILURES), db], timeout=FAILURES * 10 + 90, check=False, env=ws.env
    )
    if got.returncode != 0:
        raise RuntimeError(f"the driver inside the sandbox failed: {(got.stderr or got.stdout)[-2000:]}")
    report: dict[str, Any] = json.loads(got.stdout.strip().splitlines()[-1])
    return report


def measure() -> list[Row]:
    name = f"failure detection: unit exit -> failures row ({FAILURES} failures)"
    if os.geteuid() != 0:
        return [(name, "n/a (needs root)", "-", f"{TARGET}: n/a")]
    from tests.sandbox import SystemdSandbox, unavailable_reason

    reason = unavailable_reason()
    if reason:
        return [(name, f"n/a ({reason})", "-", f"{TARGET}: n/a")]
    with workspace("failures") as ws, SystemdSandbox() as sandbox:
        ws.state.mkdir()
        ws.write_config(
            # coalesce = 0: one row per failure, each one timed
            f'[systemd_monitor]\nunits = ["{UNIT}"]\nheal_limit = 1000\ncoalesce = 0\n\n'
            f'[[project]]\nname = "bench"\npath = "{ws.root}"\nunit = "{UNIT}"\n'
        )
        sandbox.write_unit(UNIT, UNIT_TEXT)
        progress(f"sandbox booted in {sandbox.boot_seconds:.2f}s; {FAILURES} failures under `pimainteno watch`")
        watched = drive(sandbox, ws, WATCH_DRIVER, str(ws.database))
        progress(f"reference: {FAILURES} failures under bare watch_failures")
        bare = drive(sandbox, ws, BARE_DRIVER, str(ws.root / "bare.db"))
    latencies, ref = watched["results"], bare["results"]
    if not latencies or not ref:
        return [(name, f"nothing recorded: {watched}", "-", f"{TARGET}: MISSED")]
    med, worst = statistics.median(latencies), max(latencies)
    errors = watched["errors"]
    ok = len(latencies) == FAILURES and watched["rows"] == FAILURES and not errors and med <= 0.1 and worst <= 1
    problem = f"; {errors}" if errors else ""
    return [
        (
            name + ", pimainteno watch",
            f"median {ms(med)}, worst {ms(worst)}; {watched['rows']} rows{problem}",
            f"bare watch_failures + insert: median {ms(statistics.median(ref))}, worst {ms(max(ref))}",
            f"{TARGET}: {verdict(ok)}",
        )
    ]
