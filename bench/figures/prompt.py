"""Prompt size: bytes of context sent per patch request on a 10k-file repository."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.common import Row, Workspace, progress, secs, toml_list, verdict, workspace

FILES = 10_000
BUDGET = 32 * 1024
# A worst case next to the ordinary one: failing tests that print far more than the budget.
NOISY_TESTS = ["sh", "-c", "seq 1 100000; echo FAILED; exit 1"]


def big_repository(ws: Workspace, path: Path, files: int) -> Path:
    """One commit of `files` files (plus a README) written with git fast-import, then checked out."""
    ws.git(path.parent, "init", "-q", "-b", "main", str(path))
    chunks = [b"commit refs/heads/main\ncommitter Bench <bench@example.com> 1790000000 +0000\n"]
    message = b"10k files"
    chunks.append(b"data %d\n%s\n" % (len(message), message))
    readme = b"# big\n\nA repository with ten thousand files, to measure what a patch request carries.\n"
    chunks.append(b"M 100644 inline README.md\ndata %d\n%s\n" % (len(readme), readme))
    for i in range(files):
        body = b"def f%d(x):\n    return x + %d\n" % (i, i)
        chunks.append(b"M 100644 inline pkg%03d/mod_%05d.py\ndata %d\n%s\n" % (i // 100, i, len(body), body))
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(chunks), env=ws.env, check=True)
    ws.git(path, "reset", "-q", "--hard", "main")
    return path


def measure() -> list[Row]:
    with workspace("prompt") as ws:
        progress(f"building a {FILES:,}-file repository with git fast-import")
        repo = big_repository(ws, ws.root / "big", FILES)
        projects = {"big": ["true"], "big-failing": NOISY_TESTS}
        blocks = ['[llm]\nprovider = "command"\n']
        for name, test in projects.items():
            record = ["sh", "-c", f'printf %s "$PIMAINTENO_PROMPT" > {ws.root / name}.prompt']
            blocks.append(
                f'[[project]]\nname = "{name}"\npath = "{repo}"\ntest = {toml_list(test)}\n'
                f"command = {toml_list(record)}\n"
            )
        ws.write_config("\n".join(blocks))
        sizes: dict[str, tuple[int, int, float]] = {}
        for name in projects:
            progress(f"pimainteno propose {name} (the fixer records $PIMAINTENO_PROMPT)")
            start = time.perf_counter()
            ws.pimainteno("propose", name, "--reason", "the nightly check")
            took = time.perf_counter() - start
            sent = len((ws.root / f"{name}.prompt").read_bytes())
            ((recorded,),) = ws.sql(
                "select prompt_bytes from llm_calls where project = ? and purpose = 'patch' order by id desc limit 1",
                [name],
            )
            sizes[name] = (sent, int(recorded), took)
    (sent, recorded, took), (noisy, noisy_recorded, _) = sizes["big"], sizes["big-failing"]
    ok = max(sent, noisy) <= BUDGET and (sent, noisy) == (recorded, noisy_recorded)
    return [
        (
            f"prompt size: patch request, {FILES // 1000}k-file repository",
            f"{sent:,} bytes (propose took {secs(took)}); with 64 KB of failing-test output {noisy:,} bytes",
            f"llm_calls.prompt_bytes {recorded:,} / {noisy_recorded:,}; budget {BUDGET:,} bytes",
            f"<= 32 KB: {verdict(ok)}",
        )
    ]
