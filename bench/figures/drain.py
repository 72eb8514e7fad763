"""Drain time for 1,000 triggers: two drains at once consume them, each exactly once.

The action is a no-op that only records the trigger, so this measures the queue itself (claiming,
ordering, recording), not runs. Before draining was made linear, 1,200 triggers with two drains
took 39 s: every trigger re-read the whole directory (issue 13, item 10).
"""

from __future__ import annotations

import subprocess
import time

from bench.common import PY, ROOT, Row, progress, secs, verdict, workspace

TRIGGERS = 1000
DRAINS = 2
TARGET_S = 10.0
DRAIN = """
from pimainteno.app import App
from pimainteno.commands.drain import Outcome, drain
drain(App(), action=lambda app, t: Outcome("ok"))
"""


def measure() -> list[Row]:
    with workspace("drain") as ws:
        ws.make_repo(ws.root / "app")
        ws.write_config(f'[[project]]\nname = "app"\npath = "{ws.root / "app"}"\n')
        ws.prepare_db()
        from pimainteno import queue

        progress(f"queueing {TRIGGERS} triggers (one reject per proposal)")
        for n in range(1, TRIGGERS + 1):
            queue.enqueue(ws.state / "queue", "app", kind="reject", proposal_id=n, source="timer")
        progress(f"{DRAINS} drains at once")
        start = time.perf_counter()
        procs = [subprocess.Popen([PY, "-c", DRAIN], env=ws.env, cwd=ROOT) for _ in range(DRAINS)]
        codes = [p.wait(timeout=600) for p in procs]
        drain_s = time.perf_counter() - start
        [(rows, distinct)] = ws.sql("select count(*), count(distinct proposal_id) from triggers")
        left = list((ws.state / "queue").glob("*.json"))
    ok = codes == [0] * DRAINS and rows == distinct == TRIGGERS and not left and drain_s < TARGET_S
    return [
        (
            f"drain time for {TRIGGERS:,} triggers ({DRAINS} drains at once, no-op action)",
            f"{secs(drain_s)} ({drain_s / TRIGGERS * 1000:.1f} ms/trigger); {rows} consumed, {distinct} distinct",
            "before: 39 s for 1,200 (every trigger re-read the directory)",
            f"< {TARGET_S:.0f} s, each once: {verdict(ok)}",
        )
    ]
