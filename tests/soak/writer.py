"""One soak writer process: `python -m tests.soak.writer KIND NAME SECONDS`.

Writes rows of one kind through pimainteno's own code for SECONDS, each tagged with NAME and a
sequence number, then prints one JSON line: the sequence numbers it saw committed and every error.
The configuration and database come from PIMAINTENO_CONFIG / the config's state directory.

    runs       a run as `run` records it: the row, three steps (Recorder), the final status
    llm_calls  a provider call as `accounted` records it
    failures   a failure as `heal` records it: duplicate check and insert in one transaction, then
               the journal added
    triggers   a trigger queued, then drained (the shared queue: every writer's drain may take
               any writer's trigger; each must be recorded exactly once)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from pimainteno import db as dbm
from pimainteno import records
from pimainteno.app import App


def write_run(app: App, name: str, seq: int) -> None:
    from pimainteno.pipeline import Recorder

    run_id = records.insert(app.db, "runs", {"project": name, "trigger": f"{name}:{seq}", "started_at": records.now(),
                                         "status": "running", "steps": []})  # fmt: skip
    rec = Recorder(app, run_id)
    for step in ("summarize", "propose", "validate"):
        with rec.step(step) as entry:
            entry["detail"] = f"{name}:{seq}"
    records.update(app.db, "runs", run_id, {"status": "ok", "finished_at": records.now(), "duration_s": 0.0})


def write_call(app: App, name: str, seq: int) -> None:
    from pimainteno.providers.base import Call, accounted

    with accounted(app.db, "soak", "patch", name, run_id=seq) as box:
        box["call"] = Call(text="ok", usage={"input_tokens": seq, "output_tokens": 1}, prompt_bytes=seq)


def write_failure(app: App, name: str, seq: int) -> None:
    db = app.db
    with dbm.transaction(db):
        row = db.execute("SELECT id FROM failures WHERE unit = ? AND invocation_id = ?", [f"{name}.service", str(seq)])
        if row.fetchone():
            raise AssertionError(f"failure {name}:{seq} already recorded")
        failure_id = records.insert(db, "failures", {"unit": f"{name}.service", "detected_at": records.now(),
                                                 "result": "exit-code", "exit_status": 1, "invocation_id": str(seq),
                                                 "source": "watch", "heal": "none"})  # fmt: skip
    records.update(db, "failures", failure_id, {"journal": f"{name}:{seq} failed\n" * 20})


def write_trigger(app: App, name: str, seq: int) -> None:
    from pimainteno import queue
    from pimainteno.commands.drain import Outcome, drain

    queue.enqueue(app.config.queue_dir, name, source="timer", reason=f"{name}:{seq}")
    drain(app, action=lambda app, trigger: Outcome("ok"))


WRITERS = {"runs": write_run, "llm_calls": write_call, "failures": write_failure, "triggers": write_trigger}


def main(kind: str, name: str, seconds: float) -> dict[str, Any]:
    app = App()
    app.db  # noqa: B018 - opened (and migrated) before the clock starts
    write = WRITERS[kind]
    done: list[int] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < deadline:
        try:
            write(app, name, seq)
            done.append(seq)
        except Exception as e:  # noqa: BLE001 - every error is reported; the test fails on any
            errors.append(f"{kind} {name}:{seq}: {type(e).__name__}: {e}")
        seq += 1
    return {"kind": kind, "name": name, "done": done, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], float(sys.argv[3]))), flush=True)
