"""No-change cycle: `run --all` over 100 unchanged, healthy projects vs the git floor."""

from __future__ import annotations

import statistics
import subprocess
import time

from bench.common import Row, Workspace, progress, secs, toml_list, verdict, workspace

PROJECTS = 100
RUNS = 5


def configure(ws: Workspace, count: int) -> list[str]:
    repos = []
    blocks = ['[llm]\nprovider = "command"\ncommand = ["true"]\n']
    for i in range(count):
        repo = ws.make_repo(ws.root / "repos" / f"p{i:03d}")
        repos.append(str(repo))
        blocks.append(
            f'[[project]]\nname = "p{i:03d}"\npath = "{repo}"\nbranch = "main"\ntest = {toml_list(["true"])}\n'
        )
    ws.write_config("\n".join(blocks))
    return repos


def floor_once(ws: Workspace, repos: list[str]) -> float:
    start = time.perf_counter()
    for repo in repos:
        for args in (["rev-parse", "HEAD"], ["status", "--porcelain"]):
            subprocess.run(["git", "-C", repo, *args], env=ws.env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def measure() -> list[Row]:
    with workspace("nochange") as ws:
        progress(f"creating {PROJECTS} sample repositories")
        repos = configure(ws, PROJECTS)
        progress("first `run --all` (reaches the steady state; may propose)")
        ws.pimainteno("-q", "run", "--all")
        calls_before = ws.sql("select count(*) from llm_calls")[0][0]
        runs_before = ws.sql("select count(*) from runs")[0][0]
        cycle, floor = [], []
        for i in range(RUNS):
            progress(f"timed `run --all` {i + 1}/{RUNS} and the git floor")
            start = time.perf_counter()
            ws.pimainteno("-q", "run", "--all")
            cycle.append(time.perf_counter() - start)
            floor.append(floor_once(ws, repos))
        calls = ws.sql("select count(*) from llm_calls")[0][0] - calls_before
        statuses = dict(ws.sql("select status, count(*) from runs where id > ? group by status", [runs_before]))
    t, f = statistics.median(cycle), statistics.median(floor)
    ratio = t / f
    ok = calls == 0 and ratio <= 3 and statuses == {"nothing": RUNS * PROJECTS}
    shown = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    return [
        (
            f"no-change cycle: run --all, {PROJECTS} projects",
            f"{secs(t)} ({t / PROJECTS * 1000:.1f} ms/project), {calls} model calls",
            f"git rev-parse + status floor {secs(f)} ({ratio:.2f}x); runs: {shown}",
            f"0 calls, <= 3x: {verdict(ok)}",
        )
    ]
