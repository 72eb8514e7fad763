"""The benchmark harness: `make bench` prints one table of medians, side by side with references.

Each figure (bench/figures/*.py) measures in a temporary directory and returns table rows; run
some with `python bench/run.py cold_start hook`. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(ROOT))

from bench.common import Row  # noqa: E402

NAMES = (
    "cold_start",
    "no_change",
    "hook",
    "failures",
    "dashboard",
    "writers",
    "prompt",
    "queue",
    "sandbox",
    "drain",
    "crash_loop",
    "codex_overhead",
    "fleet",
    "heal",
)


def figure(name: str) -> Callable[[], list[Row]]:
    measure: Callable[[], list[Row]] = importlib.import_module(f"bench.figures.{name}").measure
    return measure


FIGURES: dict[str, Callable[[], list[Row]]] = {name: figure(name) for name in NAMES}


def table(rows: list[Row]) -> str:
    header: Row = ("figure", "measured (median)", "reference / ratio", "target: verdict")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    names = argv or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        print(f"unknown figure {unknown[0]!r}; known: {', '.join(FIGURES)}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    failed = False
    for name in names:
        print(f"bench: measuring {name}...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            rows.extend(FIGURES[name]())
        except Exception as e:  # one broken figure still leaves the others' rows
            failed = True
            rows.append((name, f"ERROR: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", "-", "-"))
            print(f"bench: {name} failed: {e}", file=sys.stderr, flush=True)
        print(f"bench: {name} took {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
