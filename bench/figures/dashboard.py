"""Dashboard at scale: the real `pimainteno dashboard` server over 1M llm_calls and 100k runs."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import PIMAINTENO, Row, Workspace, ms, progress, verdict, workspace

CALLS = 1_000_000
RUNS = 100_000
PROJECTS = 10
REQUESTS = 15
# page: (path, reference path: the same data without the HTML page around it)
PAGES = {
    "overview /": ("/", "/api/status"),
    "table /pimainteno/llm_calls": ("/pimainteno/llm_calls", "/pimainteno/llm_calls.json"),
    "table /pimainteno/runs": ("/pimainteno/runs", "/pimainteno/runs.json"),
}
SPAN = timedelta(days=365)  # the rows are spread over a year that ends now


def stamps(count: int) -> Iterator[str]:
    start = datetime.now(UTC) - SPAN
    step = SPAN / count
    for i in range(count):
        yield (start + step * i).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fill(path: Path, projects: list[str]) -> None:
    """Bulk rows with plain executemany in one transaction (the schema comes from pimainteno.db)."""
    rnd = random.Random(7)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    steps = json.dumps([{"step": s, "outcome": "ok", "seconds": 0.2} for s in ("summarize", "propose")])
    conn.executemany(
        "INSERT INTO runs (id, project, trigger, started_at, finished_at, duration_s, status, step, steps) "
        "VALUES (?, ?, 'timer', ?, ?, 1.5, ?, 'propose', ?)",
        (
            (i + 1, projects[i % PROJECTS], t, t, rnd.choice(("nothing", "nothing", "ok", "failed")), steps)
            for i, t in enumerate(stamps(RUNS))
        ),
    )
    conn.executemany(
        "INSERT INTO llm_calls (project, run_id, provider, purpose, model, started_at, duration_s, exit_status, "
        "outcome, input_tokens, cached_tokens, output_tokens, reasoning_tokens, prompt_bytes) "
        "VALUES (?, ?, 'codex', ?, 'gpt-5-codex', ?, 3.2, 0, 'ok', 12000, 4000, 800, 200, 9000)",
        (
            (projects[i % PROJECTS], i // 10 + 1, ("summary", "patch", "commit-message")[i % 3], t)
            for i, t in enumerate(stamps(CALLS))
        ),
    )
    diff = "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-print('a')\n+print('b')\n"
    for i, t in enumerate(stamps(1000)):
        p = projects[i % PROJECTS]
        conn.execute(
            "INSERT INTO proposals (project, run_id, created_at, status, diff, files, added, removed) "
            "VALUES (?, ?, ?, 'pushed', ?, '[\"app.py\"]', 1, 1)",
            [p, i * 100 + 1, t, diff],
        )
        conn.execute(
            "INSERT INTO commits (project, sha, message, created_at, pushed_at) VALUES (?, ?, 'Fix it', ?, ?)",
            [p, f"{i:040x}", t, t],
        )
        conn.execute(
            "INSERT INTO failures (project, unit, detected_at, result, exit_status, journal, source) "
            "VALUES (?, ?, ?, 'exit-code', 1, 'boom', 'watch')",
            [p, f"{p}.service", t],
        )
    for p in projects:
        conn.execute(
            "INSERT INTO summaries (project, head, created_at, provider, text) VALUES (?, ?, ?, 'codex', ?)",
            [p, "a" * 40, datetime.now(UTC).isoformat(), f"# {p}\n\nA project with a long history."],
        )
    conn.execute("COMMIT")
    conn.close()


@contextlib.contextmanager
def server(ws: Workspace) -> Iterator[str]:
    proc = subprocess.Popen(
        [PIMAINTENO, "dashboard", "--port", "0"], env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("Dashboard: "):
            raise RuntimeError(f"the dashboard did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
        yield line.split()[1].rstrip("/")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get(base: str, path: str) -> float:
    host, port = base.removeprefix("http://").split(":")
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    took = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:300]!r}")
    return took


def measure() -> list[Row]:
    with workspace("dashboard") as ws:
        projects = [f"project-{i}" for i in range(PROJECTS)]
        for p in projects:
            (ws.root / p).mkdir()
        ws.write_config(
            '[llm]\nprovider = "command"\ncommand = "true"\n\n'
            + "".join(f'[[project]]\nname = "{p}"\npath = "{ws.root / p}"\n' for p in projects)
        )
        ws.prepare_db()
        progress(f"filling the database: {CALLS:,} llm_calls, {RUNS:,} runs")
        start = time.perf_counter()
        fill(ws.database, projects)
        built = time.perf_counter() - start
        size = ws.database.stat().st_size / 1e6
        progress(f"built in {built:.1f}s ({size:.0f} MB); timing {REQUESTS} GETs of each page")
        medians: dict[str, tuple[float, float]] = {}
        with server(ws) as base:
            for name, (path, ref) in PAGES.items():
                get(base, path), get(base, ref)  # warm-up: first use of the connections and templates
                times = [(get(base, path), get(base, ref)) for _ in range(REQUESTS)]
                medians[name] = statistics.median(t for t, _ in times), statistics.median(r for _, r in times)
    rows = []
    for name, (t, r) in medians.items():
        ref = PAGES[name][1]
        rows.append((
            f"dashboard at scale: {name}",
            ms(t),
            f"{ref} {ms(r)} ({t / r:.1f}x); {CALLS // 1000}k calls, {RUNS // 1000}k runs, {size:.0f} MB",
            f"<= 100 ms: {verdict(t <= 0.100)}",
        ))  # fmt: skip
    return rows
