"""codex run overhead: one `codex exec` against the local scripted instant model, as pimainteno runs it."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, Row, progress, secs, verdict, workspace

RUNS = 10
REFERENCE_RUNS = 3
TARGET = 0.6  # seconds
CODEX = Path(os.environ.get("PIMAINTENO_TEST_CODEX") or ROOT / ".tools" / "node_modules" / ".bin" / "codex")


def timed_runs(analytics: bool, repo: Path, runs: int) -> list[float]:
    from pimainteno.providers.codex import run_codex
    from tests.modelserver import ModelServer, message

    # codex refuses to create its sandbox helper under /tmp (where the workspace is): keep its home out
    home = Path(tempfile.mkdtemp(prefix="pimainteno-bench-codex-", dir="/var/tmp"))
    try:
        times = []
        for _ in range(runs):
            with ModelServer([message("ok")]) as srv:
                # the user's own option comes after pimainteno's `analytics.enabled=false` and wins
                extra = {"options": {"analytics": {"enabled": True}}} if analytics else {}
                config = srv.llm_config(CODEX, **extra)
                start = time.perf_counter()
                call = run_codex(config, repo, "Say ok.", writable=False, timeout=60, codex_home=home)
                times.append(time.perf_counter() - start)
            if not call.ok:
                raise RuntimeError(f"codex run failed: {call.error}")
        return times
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure() -> list[Row]:
    if not os.access(CODEX, os.X_OK):
        raise RuntimeError(f"no codex at {CODEX}: run make deps")
    from pimainteno.providers.codex_version import codex_version

    with workspace("codex") as ws:
        repo = ws.make_repo(ws.root / "app")
        progress(f"{RUNS} codex exec runs with analytics off (pimainteno's default)")
        off = statistics.median(timed_runs(False, repo, RUNS))
        progress(f"{REFERENCE_RUNS} codex exec runs with codex's own defaults (analytics on)")
        on = statistics.median(timed_runs(True, repo, REFERENCE_RUNS))
    return [
        (
            f"codex run overhead: codex {codex_version(str(CODEX))} exec, instant local model",
            f"{secs(off)} (analytics off, median of {RUNS})",
            f"analytics on: {secs(on)} (median of {REFERENCE_RUNS}; ~5.6 s without a route out)",
            f"<= {TARGET} s: {verdict(off <= TARGET)}",
        )
    ]
