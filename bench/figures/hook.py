"""Hook cost: `git merge` with pimainteno's post-merge hook vs with an empty hook.

Before each merge the queue is emptied (as a drain would), so every merge with the hook really
queues a run: the hook's full path, checked after each merge.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from bench.common import Row, Workspace, ms, progress, verdict, workspace

MERGES = 50


def timed_merge(ws: Workspace, repo: Path, hooks: Path, base: str, pending: Path) -> tuple[float, bool]:
    """One fast-forward merge with the hooks in `hooks`; its time and whether a run was queued."""
    subprocess.run(["git", "-C", str(repo), "reset", "-q", "--hard", base], env=ws.env, check=True)
    pending.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(
        ["git", "-C", str(repo), "-c", f"core.hooksPath={hooks}", "merge", "-q", "--ff-only", "feature"],
        env=ws.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start, pending.exists()


def measure() -> list[Row]:
    with workspace("hook") as ws:
        repo = ws.make_repo(ws.root / "app")
        base = ws.git(repo, "rev-parse", "HEAD").strip()
        ws.git(repo, "checkout", "-q", "-b", "feature")
        (repo / "CHANGES.md").write_text("A change that arrives by a pull.\n")
        ws.git(repo, "add", "CHANGES.md")
        ws.git(repo, "commit", "-q", "-m", "change")
        ws.git(repo, "checkout", "-q", "main")
        ws.write_config(
            f'[llm]\nprovider = "command"\ncommand = "true"\n\n[[project]]\nname = "app"\npath = "{repo}"\n'
        )
        ws.pimainteno("install-hook", "app")
        ours = repo / ".git" / "hooks"
        empty = ws.root / "empty-hooks"
        empty.mkdir()
        (empty / "post-merge").write_text("#!/bin/sh\nexit 0\n")
        (empty / "post-merge").chmod(0o755)
        progress(f"{MERGES} fast-forward merges with each hook, alternating")
        pending = ws.state / "queue" / "app.run.json"
        with_hook, without, queued = [], [], 0
        for i in range(MERGES + 2):  # the first two of each are warm-up
            (a, ran), (b, _) = timed_merge(ws, repo, ours, base, pending), timed_merge(ws, repo, empty, base, pending)
            if i >= 2:
                with_hook.append(a)
                without.append(b)
                queued += ran
    over = statistics.median(with_hook) - statistics.median(without)
    return [
        (
            f"hook cost: git merge with the post-merge hook (median of {MERGES})",
            f"{ms(statistics.median(with_hook))} (+{ms(over)}, worst {ms(max(with_hook))}); {queued} runs queued",
            f"empty hook {ms(statistics.median(without))}",
            f"<= 50 ms over empty: {verdict(over <= 0.050 and queued == MERGES)}",
        )
    ]
