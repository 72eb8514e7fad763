"""CLI cold start: `pimainteno --help` and `status` vs sqlite-utils (same click + SQLite stack) and git."""

from __future__ import annotations

import shutil

from bench.common import (
    BIN,
    PIMAINTENO,
    Row,
    median_seconds,
    median_seconds_side_by_side,
    ms,
    progress,
    verdict,
    workspace,
)

RUNS = 21


def measure() -> list[Row]:
    sqlite_utils = shutil.which("sqlite-utils", path=str(BIN)) or "sqlite-utils"
    with workspace("cold") as ws:
        repo = ws.make_repo(ws.root / "app")
        ws.write_config(
            f'[llm]\nprovider = "command"\ncommand = "true"\n\n[[project]]\nname = "app"\npath = "{repo}"\n'
        )
        ws.prepare_db()
        ws.pimainteno("run", "app")  # a run in the database for status to show
        progress(f"{RUNS} runs of each command")
        help_t, ref_t = median_seconds_side_by_side(
            [[PIMAINTENO, "--help"], [sqlite_utils, "--help"]], RUNS, env=ws.env
        )
        status_t, tables_t = median_seconds_side_by_side(
            [[PIMAINTENO, "status"], [sqlite_utils, "tables", str(ws.database)]], RUNS, env=ws.env
        )
        git_t = median_seconds(["git", "--version"], RUNS, env=ws.env)
    return [
        (
            "CLI cold start: pimainteno --help",
            ms(help_t),
            f"sqlite-utils --help {ms(ref_t)} ({help_t / ref_t:.2f}x); git --version {ms(git_t)}",
            f"<= sqlite-utils: {verdict(help_t <= ref_t)}",
        ),
        (
            "CLI cold start: pimainteno status",
            ms(status_t),
            f"sqlite-utils tables DB {ms(tables_t)} ({status_t / tables_t:.2f}x); git --version {ms(git_t)}",
            f"<= 0.6x sqlite-utils tables: {verdict(status_t <= 0.6 * tables_t)}",
        ),
    ]
