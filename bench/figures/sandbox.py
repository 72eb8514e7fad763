"""Proof sandbox overhead: a trivial test command run bare vs in the bubblewrap sandbox.

Both go through `sandbox.run_tests` on a real worktree (the bare one with `enabled=False`, as
`sandbox = false` would), alternating, so the figure is what the sandbox adds to every test run:
bwrap's namespaces and mounts, the start marker, and the git lookups for the read-only view.
"""

from __future__ import annotations

import os
import statistics
import time

from bench.common import Row, ms, progress, verdict, workspace

RUNS = 20
COMMAND = "true"


def measure() -> list[Row]:
    from pimainteno import git, sandbox

    why = sandbox.problem()
    if why is not None:
        return [("proof sandbox overhead", f"not measured: {why}", "-", "-")]
    with workspace("sandbox") as ws:
        repo = ws.make_repo(ws.root / "app")
        saved = {k: os.environ.get(k) for k in ws.env}
        os.environ.update(ws.env)  # the library reads HOME and git's settings from this process
        try:
            with git.temporary_worktree(repo, ws.state, "bench") as wt:
                progress(f"{RUNS} runs of `{COMMAND}` bare and sandboxed, alternating")
                bare, boxed = [], []
                for i in range(RUNS + 2):  # the first two of each are warm-up
                    for enabled, times in ((False, bare), (True, boxed)):
                        start = time.perf_counter()
                        result = sandbox.run_tests(COMMAND, wt, repo, 30, enabled=enabled)
                        took = time.perf_counter() - start
                        if not result.ok:
                            raise RuntimeError(f"`{COMMAND}` failed (sandbox={enabled}): {result.output[-300:]}")
                        if i >= 2:
                            times.append(took)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    over = statistics.median(boxed) - statistics.median(bare)
    return [
        (
            f"proof sandbox overhead: `{COMMAND}` as the test command (median of {RUNS})",
            f"{ms(statistics.median(boxed))} (+{ms(over)}, worst {ms(max(boxed))})",
            f"bare {ms(statistics.median(bare))}",
            f"<= 50 ms added: {verdict(over <= 0.050)}",
        )
    ]
