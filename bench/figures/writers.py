"""Concurrent writers: 16 processes recording 200 steps each at once through pimainteno.db."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from bench.common import PY, ROOT, Row, Workspace, ms, progress, secs, verdict, workspace

WRITERS = 16
STEPS = 200
WORKER = str(ROOT / "bench" / "workers.py")


def run_writers(ws: Workspace, count: int, runs: int, steps: int) -> tuple[float, list[dict[str, Any]]]:
    """Start `count` writers, release them together; wall time from "go" to the last one done."""
    procs = [
        subprocess.Popen(
            [PY, WORKER, "writer", str(ws.database), f"w{count}-{i}", str(runs), str(steps)],
            env=ws.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("a writer did not start")
    start = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        results.append(json.loads(out.strip().splitlines()[-1]))
    return time.perf_counter() - start, results


def measure() -> list[Row]:
    with workspace("writers") as ws:
        from pimainteno import db as dbm

        dbm.open_db(ws.database).conn.close()
        progress(f"{WRITERS} writers x {STEPS} steps at once")
        wall, results = run_writers(ws, WRITERS, 1, STEPS)
        progress(f"reference: the same {WRITERS} runs x {STEPS} steps from 1 process")
        ref_wall, _ = run_writers(ws, 1, WRITERS, STEPS)
        errors = [e for r in results for e in r["errors"]]
        slowest = max(float(r["slowest"]) for r in results)
        prefix = f"w{WRITERS}-%"
        rows = ws.sql(
            "select count(*), count(distinct project || ':' || prompt_bytes) from llm_calls where project like ?",
            [prefix],
        )[0]
        steps_kept = sum(
            len(json.loads(s or "[]")) for (s,) in ws.sql("select steps from runs where project like ?", [prefix])
        )
    expected = WRITERS * STEPS
    lost = expected - int(rows[1])
    duplicated = int(rows[0]) - int(rows[1])
    ok = not errors and lost == 0 and duplicated == 0 and steps_kept == expected
    detail = f"; first error: {errors[0]}" if errors else ""
    return [
        (
            f"concurrent writers: {WRITERS} processes x {STEPS} steps",
            f"{secs(wall)} ({expected / wall:.0f} steps/s, slowest {ms(slowest)}); "
            f"{len(errors)} errors, {lost} lost, {duplicated} duplicated{detail}",
            f"1 process, {WRITERS} runs one after another: {secs(ref_wall)} ({wall / ref_wall:.2f}x)",
            f"0 errors, 0 lost: {verdict(ok)}",
        )
    ]
