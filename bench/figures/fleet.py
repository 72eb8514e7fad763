"""The fleet: 3 hosts × 1,000 runs, real `pimainteno replicate` (Litestream) and a real `pimainteno fleet`.

- replication lag: a write on a host until `litestream restore` of its replica returns it;
- a run appearing centrally: a new `runs` row on host 2 until /-/fleet.json shows it;
- the fleet page (`/-/fleet`, reference: `/-/fleet.json`) with 3 hosts × 1k runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.common import PIMAINTENO, Row, Workspace, ms, progress, secs, verdict, workspace
from bench.figures.dashboard import get, stamps

HOSTS = ("host-1", "host-2", "host-3")
RUNS = 1000
INTERVAL = "1"
SAMPLES = 5
REQUESTS = 15


def make_host(ws: Workspace, name: str) -> Path:
    """A host's configuration and a database with RUNS runs, model calls, proposals and commits."""
    from pimainteno import config, db, records

    root = ws.root / name
    (root / "app").mkdir(parents=True)
    cfg_path = root / "PiMainteno.toml"
    cfg_path.write_text(
        f'[llm]\nprovider = "command"\ncommand = "true"\n\n[state]\ndir = "{root / "state"}"\n\n'
        f'[[project]]\nname = "app-{name}"\npath = "{root / "app"}"\n'
    )
    cfg = config.load(cfg_path)
    d = db.open_db(cfg.database)
    records.sync_projects(d, cfg.projects, "command")
    rnd = random.Random(name)
    project = f"app-{name}"
    with db.transaction(d):
        d.conn.executemany(
            "INSERT INTO runs (project, trigger, started_at, finished_at, duration_s, status, step) "
            "VALUES (?, 'timer', ?, ?, 2.0, ?, 'propose')",
            [(project, t, t, rnd.choice(("nothing", "ok", "failed"))) for t in stamps(RUNS)],
        )
        d.conn.executemany(
            "INSERT INTO llm_calls (project, provider, purpose, started_at, outcome, input_tokens, output_tokens) "
            "VALUES (?, 'codex', 'patch', ?, 'ok', 12000, 800)",
            [(project, t) for t in stamps(RUNS)],
        )
    d.conn.close()
    return cfg_path


@contextlib.contextmanager
def started(ws: Workspace, name: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    log = open(ws.root / f"{name}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([PIMAINTENO, *args], env=ws.env, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def until(what: str, check: object, timeout: float = 60) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
            if check():  # type: ignore[operator]
                return time.perf_counter() - start
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def replica_has(url: str, key: str, value: str) -> bool:
    from pimainteno import fleet

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.db"
        done = subprocess.run([fleet.require_litestream(), "restore", "-o", str(out), url], capture_output=True,
                              timeout=60)  # fmt: skip
        if done.returncode != 0:
            return False
        conn = sqlite3.connect(out)
        try:
            row = conn.execute("SELECT value FROM status WHERE key = ?", [key]).fetchone()
        finally:
            conn.close()
    return bool(row and row[0] == value)


def fleet_json(base: str) -> dict[str, dict[str, object]]:
    with urllib.request.urlopen(base + "/-/fleet.json", timeout=30) as r:
        return {h["name"]: h for h in json.load(r)["hosts"]}


def measure() -> list[Row]:
    from pimainteno import db, records

    with workspace("fleet") as ws:
        progress(f"3 hosts with {RUNS:,} runs each")
        configs = {h: make_host(ws, h) for h in HOSTS}
        (ws.root / "nas").mkdir()
        url = f"file://{ws.root / 'nas'}"
        with contextlib.ExitStack() as stack:
            for h, cfg in configs.items():
                args = ("--config", str(cfg), "replicate", "--url", url, "--name", h, "--interval", INTERVAL)
                stack.enter_context(started(ws, h, *args))
            central = ("fleet", "--url", url, "--interval", INTERVAL, "--port", "0")
            stack.enter_context(started(ws, "fleet", *central))
            until("the fleet's address", lambda: (ws.root / "fleet.log").read_text().startswith("Fleet: "))
            base = (ws.root / "fleet.log").read_text().split()[1].removesuffix("/-/fleet")
            until("three restored hosts", lambda: all(h["projects"] for h in fleet_json(base).values())
                  and len(fleet_json(base)) == 3, 120)  # fmt: skip

            progress("replication lag: a write on host-1 until its replica returns it")
            lags = []
            d1 = db.open_db(configs["host-1"].parent / "state" / "pimainteno.db")
            for i in range(SAMPLES):
                value = f"mark-{i}-{time.time()}"
                records.set_status(d1, "bench.mark", value)
                lags.append(
                    until("the mark in the replica", lambda v=value: replica_has(f"{url}/host-1", "bench.mark", v))
                )
            d1.conn.close()

            progress("a new run on host-2 until the fleet page shows it")
            appear = []
            d2 = db.open_db(configs["host-2"].parent / "state" / "pimainteno.db")
            for _ in range(SAMPLES):
                run_id = records.insert(d2, "runs", {"project": "app-host-2", "trigger": "bench", "started_at": records.now(),
                                                "status": "ok"})  # fmt: skip
                appear.append(until("the run centrally", lambda r=run_id: fleet_json(base)["host-2"]["projects"][0]
                                    ["last_run"]["id"] == r))  # type: ignore[index]  # fmt: skip
            d2.conn.close()

            progress(f"timing {REQUESTS} GETs of /-/fleet")
            host, port = base.removeprefix("http://").split(":")
            get(base, "/-/fleet"), get(base, "/-/fleet.json")
            pages = [(get(base, "/-/fleet"), get(base, "/-/fleet.json")) for _ in range(REQUESTS)]
    lag, seen = statistics.median(lags), statistics.median(appear)
    page, ref = statistics.median(p for p, _ in pages), statistics.median(r for _, r in pages)
    return [
        ("fleet: replication lag (write → replica)", secs(lag), f"interval {INTERVAL} s; max {secs(max(lags))}",
         f"<= 3 intervals: {verdict(lag <= 3 * float(INTERVAL))}"),
        ("fleet: a run appears centrally", secs(seen), f"interval {INTERVAL} s; max {secs(max(appear))}",
         f"<= 30 s: {verdict(max(appear) <= 30)}"),
        ("fleet: page /-/fleet, 3 hosts × 1k runs", ms(page), f"/-/fleet.json {ms(ref)} ({page / ref:.1f}x)",
         f"<= 100 ms: {verdict(page <= 0.100)}"),
    ]  # fmt: skip
