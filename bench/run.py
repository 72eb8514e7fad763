"""The benchmark harness: `make bench` prints one table of medians, side by side with references.

Each figure is a function returning rows; run one with `python bench/run.py cold_start`.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
Row = tuple[str, str, str, str]  # figure, measured, reference / ratio, target and verdict


def median_seconds(argv: list[str], runs: int = 15, **kw: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, **kw)  # type: ignore[call-overload]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def cold_start() -> list[Row]:
    pim = str(BIN / "pimainteno")
    sqlite_utils = shutil.which("sqlite-utils", path=str(BIN)) or "sqlite-utils"
    help_t = median_seconds([pim, "--help"])
    ref_t = median_seconds([sqlite_utils, "--help"])
    git_t = median_seconds(["git", "--version"])
    status_t = median_seconds(
        [pim, "status"],
        env={
            "PIMAINTENO_CONFIG": str(ROOT / "PiMainteno.toml"),
            "PIMAINTENO_STATE_DIR": "/nonexistent-pimainteno-bench",
            "PATH": "/usr/bin:/bin",
        },
    )
    verdict = "ok" if help_t <= ref_t else "MISSED"
    return [
        (
            "CLI cold start: pimainteno --help",
            ms(help_t),
            f"sqlite-utils --help {ms(ref_t)} ({help_t / ref_t:.2f}x)",
            f"<= sqlite-utils: {verdict}",
        ),
        ("CLI cold start: pimainteno status", ms(status_t), f"git --version {ms(git_t)}", "-"),
    ]


FIGURES: dict[str, Callable[[], list[Row]]] = {"cold_start": cold_start}


def main(argv: list[str]) -> int:
    names = argv or list(FIGURES)
    rows: list[Row] = []
    for name in names:
        print(f"bench: measuring {name}...", file=sys.stderr)
        rows.extend(FIGURES[name]())
    header: Row = ("figure", "measured (median)", "reference", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
