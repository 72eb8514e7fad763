"""Queue throughput: 1,000 triggers for 100 projects from 4 processes at once, then one drain."""

from __future__ import annotations

import json
import random
import subprocess
import time

from bench.common import PY, ROOT, Row, Workspace, progress, secs, verdict, workspace
from bench.figures.no_change import configure

PROJECTS = 100
TRIGGERS = 1000
ENQUEUERS = 4
WORKER = str(ROOT / "bench" / "workers.py")


def enqueue_all(ws: Workspace, names: list[str]) -> float:
    """Each project TRIGGERS / PROJECTS times, shuffled over ENQUEUERS processes released together."""
    requests = names * (TRIGGERS // len(names))
    random.Random(11).shuffle(requests)
    share = len(requests) // ENQUEUERS
    procs = [
        subprocess.Popen(
            [PY, WORKER, "enqueue", str(ws.state / "queue"), *requests[i * share : (i + 1) * share]],
            env=ws.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(ENQUEUERS)
    ]
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("an enqueuer did not start")
    start = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.communicate(timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"an enqueuer exited {p.returncode}")
    return time.perf_counter() - start


def measure() -> list[Row]:
    with workspace("queue") as ws:
        progress(f"creating {PROJECTS} sample repositories")
        configure(ws, PROJECTS)
        names = [f"p{i:03d}" for i in range(PROJECTS)]
        progress(f"{TRIGGERS} enqueues from {ENQUEUERS} processes")
        enqueue_s = enqueue_all(ws, names)
        pending = [json.loads(p.read_text()) for p in (ws.state / "queue").glob("*.json")]
        requests = sum(t["requests"] for t in pending)
        progress(f"pimainteno drain ({len(pending)} pending triggers)")
        start = time.perf_counter()
        ws.pimainteno("-q", "drain")
        drain_s = time.perf_counter() - start
        per_project = dict(ws.sql("select project, count(*) from runs group by project"))
        consumed = ws.sql("select status, count(*) from triggers group by status")
        left = list((ws.state / "queue").glob("*.json"))
    twice = sorted(p for p, n in per_project.items() if n > 1)
    missing = sorted(set(names) - set(per_project))
    runs = sum(per_project.values())
    ok = runs == PROJECTS and not twice and not missing and not left
    # Not part of the target, but shown: concurrent merges of one waiting trigger can lose each
    # other's update (its request count, reason or failure id; see tests/soak/test_queue_soak.py).
    lost = f", {TRIGGERS - requests} merges LOST" if requests != TRIGGERS else ""
    return [
        (
            f"queue throughput: {TRIGGERS:,} enqueues, {PROJECTS} projects, drain",
            f"{runs} runs, {len(twice)} twice, {len(missing)} missing; drain {secs(drain_s)} "
            f"({drain_s / max(runs, 1) * 1000:.0f} ms/run)",
            f"enqueue {secs(enqueue_s)} ({TRIGGERS / enqueue_s:.0f}/s, {ENQUEUERS} processes); "
            f"{len(pending)} files held {requests} of {TRIGGERS} requests{lost}; triggers {dict(consumed)}",
            f"100 runs, none twice: {verdict(ok)}",
        )
    ]
