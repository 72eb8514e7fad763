"""Rows a crash loop writes: a unit that systemd restarts every 100 ms, under `pimainteno watch`.

Scaled: 20 s of the loop instead of 60 s (the rows do not grow with time within the `coalesce`
window, which is what is measured; a 60 s loop is three windows of 20 s at most). Before failures
were coalesced, each crash was a row: ~4 rows a second with up to 8 kB of journal each (issue 18).
"""

from __future__ import annotations

import json
import os
import textwrap

from bench.common import Row, progress, verdict, workspace

LOOP_S = 20
UNIT = "bench-loop.service"
UNIT_TEXT = (
    "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sh -c 'echo looping >&2; exit 1'\n"
    "Restart=always\nRestartSec=100ms\n"
)
TARGET_ROWS = 2
DRIVER = """
import json, sqlite3, subprocess, sys, time
unit, seconds, db_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
watch = subprocess.Popen([sys.executable, "-m", "pimainteno", "-q", "watch", "--for", str(seconds + 15)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        if sqlite3.connect(db_path).execute("select value from status where key = 'systemd.status'").fetchone() == ("listening",):
            break
    except sqlite3.Error:
        pass
    time.sleep(0.05)
subprocess.run(["systemctl", "start", unit], capture_output=True)
time.sleep(seconds)
subprocess.run(["systemctl", "stop", unit], capture_output=True)
time.sleep(3)
watch.terminate()
watch.wait(timeout=30)
rows, crashes = sqlite3.connect(db_path).execute("select count(*), coalesce(sum(count), 0) from failures").fetchone()
print(json.dumps({"rows": rows, "crashes": crashes}))
"""


def measure() -> list[Row]:
    name = f"rows written by a crash loop ({LOOP_S} s, restarted every 100 ms; scaled from 60 s)"
    if os.geteuid() != 0:
        return [(name, "n/a (needs root)", "-", f"<= {TARGET_ROWS} rows: n/a")]
    from tests.sandbox import SystemdSandbox, unavailable_reason

    reason = unavailable_reason()
    if reason:
        return [(name, f"n/a ({reason})", "-", f"<= {TARGET_ROWS} rows: n/a")]
    with workspace("crash-loop") as ws, SystemdSandbox() as sandbox:
        ws.state.mkdir()
        ws.write_config(f'[systemd_monitor]\nunits = ["{UNIT}"]\ncoalesce = 60\n')
        sandbox.write_unit(UNIT, UNIT_TEXT)
        progress(f"a crash loop of {LOOP_S}s under `pimainteno watch`")
        got = sandbox.python(["-c", textwrap.dedent(DRIVER), UNIT, str(LOOP_S), str(ws.database)],
                             timeout=LOOP_S + 90, check=False, env=ws.env)  # fmt: skip
    if got.returncode != 0:
        return [(name, f"the driver failed: {(got.stderr or got.stdout)[-300:]}", "-", "MISSED")]
    report = json.loads(got.stdout.strip().splitlines()[-1])
    ok = 1 <= report["rows"] <= TARGET_ROWS and report["crashes"] > 1
    return [
        (
            name,
            f"{report['rows']} row(s) for {report['crashes']} crashes seen",
            f"before: a row per crash (~{LOOP_S * 4} rows)",
            f"<= {TARGET_ROWS} rows: {verdict(ok)}",
        )
    ]
