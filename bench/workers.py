"""Processes the figures start: `python bench/workers.py writer DB NAME RUNS STEPS` or
`python bench/workers.py enqueue QUEUE_DIR PROJECT...`.

A writer opens the database, says "ready", waits for "go" on stdin (so all start at once), then
records RUNS runs of STEPS steps each the way a run does (an `llm_calls` row and the run's `steps` JSON, in one
transaction), and prints one JSON line: errors, the slowest step and its own wall time. An
enqueuer does the same handshake, then queues a run of each project named.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def writer(db_path: str, name: str, runs: int, steps: int) -> dict[str, object]:
    from pimainteno import db as dbm
    from pimainteno import records

    d = dbm.open_db(db_path)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    errors: list[str] = []
    slowest = 0.0
    for r in range(runs):
        project = f"{name}-{r}"
        run_id = records.insert(d, "runs", {"project": project, "trigger": "bench", "started_at": records.now(),
                                        "status": "running"})  # fmt: skip
        recorded: list[dict[str, object]] = []
        for i in range(steps):
            t0 = time.perf_counter()
            try:
                with dbm.transaction(d):
                    records.insert(d, "llm_calls", {"project": project, "run_id": run_id, "provider": "bench",
                                                "purpose": "patch", "started_at": records.now(), "prompt_bytes": i})  # fmt: skip
                    recorded.append({"step": f"s{i}", "outcome": "ok", "seconds": 0.0})
                    records.update(d, "runs", run_id, {"step": f"s{i}", "steps": recorded})
            except Exception as e:  # noqa: BLE001 - counted and reported, the figure fails on any
                errors.append(f"{type(e).__name__}: {e}")
            slowest = max(slowest, time.perf_counter() - t0)
        records.update(d, "runs", run_id, {"status": "ok", "finished_at": records.now()})
    return {"errors": errors, "slowest": slowest, "seconds": time.perf_counter() - start}


def enqueuer(queue_dir: str, projects: list[str]) -> dict[str, object]:
    """Queue a run of each project named (names repeat), as hooks and timers do."""
    from pimainteno import queue

    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    merged = sum(queue.enqueue(Path(queue_dir), p, source="timer")[1] for p in projects)
    return {"merged": merged, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    if kind == "writer":
        print(json.dumps(writer(args[0], args[1], int(args[2]), int(args[3]))), flush=True)
    elif kind == "enqueue":
        print(json.dumps(enqueuer(args[0], args[1:])), flush=True)
    else:
        sys.exit(f"unknown worker {kind!r}")
