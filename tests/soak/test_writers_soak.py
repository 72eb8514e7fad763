"""16 concurrent writers of every kind for 8 s (PIMAINTENO_SOAK_SECONDS) while the dashboard and `status` read.

No "database is locked", no lost and no duplicated rows: every row a writer saw committed is in
the database exactly once, and no reader ever got an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from pimainteno import db as dbm
from tests.conftest import write_config
from tests.soak.helpers import dashboard, env_with_repo, get

pytestmark = pytest.mark.slow

# 16 writers contend from the first second on 2 cores; a longer soak: PIMAINTENO_SOAK_SECONDS=300.
SECONDS = float(os.environ.get("PIMAINTENO_SOAK_SECONDS", "8"))
KINDS = ("runs", "llm_calls", "failures", "triggers")
PER_KIND = 4
PAGES = ("/", "/api/status", "/pimainteno/runs", "/pimainteno/llm_calls", "/pimainteno/failures",
         "/pimainteno/triggers", "/pimainteno/runs.json?_sort_desc=id")  # fmt: skip


def names(kind: str) -> list[str]:
    return [f"{kind[0]}{i}" for i in range(PER_KIND)]


def read_all(base: str, stop: threading.Event, seen: Counter[str], problems: list[str]) -> None:
    while not stop.is_set():
        for path in PAGES:
            try:
                status, body = get(base, path)
            except OSError as e:
                problems.append(f"GET {path}: {e}")
                continue
            seen["pages"] += 1
            if status != 200 or "database is locked" in body:
                problems.append(f"GET {path}: HTTP {status}: {body[:300]}")
        cli = subprocess.run([sys.executable, "-m", "pimainteno", "status", "--json"], capture_output=True, text=True,
                             env=env_with_repo())  # fmt: skip
        seen["status"] += 1
        if cli.returncode != 0:
            problems.append(f"status: exit {cli.returncode}: {cli.stderr.strip()[-300:]}")


def test_sixteen_writers_of_every_kind_with_the_dashboard_reading(tmp_path: Path) -> None:
    # Every writer's name is a configured project: drain only runs triggers of configured projects.
    write_config(
        tmp_path, "".join(f"[[project]]\nname = '{n}'\npath = '{tmp_path}'\n" for k in KINDS for n in names(k))
    )
    database = tmp_path / "state" / "pimainteno.db"
    dbm.open_db(database).conn.close()
    stop, seen, problems = threading.Event(), Counter[str](), list[str]()
    with dashboard() as base:
        reader = threading.Thread(target=read_all, args=(base, stop, seen, problems), daemon=True)
        reader.start()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.soak.writer", kind, name, str(SECONDS)],
                env=env_with_repo(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for kind in KINDS
            for name in names(kind)
        ]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=SECONDS + 120)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        stop.set()
        reader.join(timeout=60)

    errors = [e for r in results for e in r["errors"]]
    assert not errors, f"{len(errors)} writer errors, e.g. {errors[:5]}"
    assert not problems, f"{len(problems)} reader problems, e.g. {problems[:5]}"
    assert seen["pages"] > SECONDS * 5 / 3 and seen["status"] > SECONDS / 6, seen  # 50 and 5 in 30 s

    db = dbm.open_db(database)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = {(r["kind"], r["name"]): r["done"] for r in results}
    for (kind, name), seqs in done.items():
        assert len(seqs) > 10, f"{kind} writer {name} barely wrote: {len(seqs)} rows in {SECONDS}s"
    tags: dict[str, list[str]] = {
        "runs": [
            r[0] for r in db.execute("SELECT trigger FROM runs WHERE status = 'ok' AND json_array_length(steps) = 3")
        ],
        "llm_calls": [f"{p}:{n}" for p, n in db.execute("SELECT project, run_id FROM llm_calls WHERE outcome = 'ok'")],
        "failures": [
            f"{u.removesuffix('.service')}:{i}"
            for u, i in db.execute("SELECT unit, invocation_id FROM failures WHERE journal IS NOT NULL")
        ],
        # a trigger merged into one already waiting carries both reasons: "a:1; a:2"
        "triggers": [
            t for (r,) in db.execute("SELECT reason FROM triggers WHERE status = 'done'") for t in r.split("; ")
        ],
    }
    for kind in KINDS:
        written = Counter(f"{name}:{s}" for name in names(kind) for s in done[(kind, name)])
        stored = Counter(tags[kind])
        lost = written - stored
        duplicated = {t: n for t, n in stored.items() if n > 1}
        extra = stored - written
        assert not lost, f"{kind}: {sum(lost.values())} rows lost, e.g. {list(lost)[:5]}"
        assert not duplicated, f"{kind}: rows recorded twice: {list(duplicated)[:5]}"
        assert not extra, f"{kind}: rows no writer saw committed: {list(extra)[:5]}"
    queue = tmp_path / "state" / "queue"
    assert not list(queue.glob("*.json")), "triggers left in the queue"
    assert not [p for p in (queue / ".claimed").iterdir()], "claims left behind"
    print(f"soak: {sum(len(s) for s in done.values())} rows by 16 writers, {seen['pages']} pages and "
          f"{seen['status']} status reads in {SECONDS}s")  # fmt: skip
