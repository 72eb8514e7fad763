"""`pimainteno drain [--follow]`: run every queued trigger, oldest first, and record each one.

The one executor of the queue: the hook, the dashboard, timers and `watch` only drop triggers
(pimainteno/queue.py); this runs them with `pipeline.dispatch`, one at a time, recording each in the
`triggers` table. Two drains at once never run one trigger twice (a trigger is claimed by an
atomic rename), and the trigger of a drain that was killed is run again by the next drain.

A trigger whose project is locked (another run holds it: a timer, a second drain, `run`) is not
consumed: it stays claimed and is tried again with a backoff (1 s, doubling to 30 s) once the
rest of the queue is done, and a drain without --follow waits for it; its failure keeps
`heal = queued` meanwhile. No heal, "Run now" or approval is dropped because someone else was busy.
`--follow` waits out a full disk or a locked database (the trigger being run stays claimed and runs
again) instead of exiting.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pimainteno import pipeline, queue, records
from pimainteno.app import App
from pimainteno.errors import ConfigError, PimaintenoError
from pimainteno.git import GUARD_ENV as GUARD
from pimainteno.keeper import TRANSIENT
from pimainteno.pipeline import Outcome
from pimainteno.queue import MalformedTrigger, Trigger

__all__ = ["GUARD", "Outcome", "dispatch", "drain", "print_record"]
log = logging.getLogger("pimainteno")

HEARTBEAT = 60.0  # seconds between `drain.status` updates of an idle follower
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds before a trigger whose project was locked is tried again
UNKNOWN = "unknown-project"  # triggers.status of a trigger for a project this configuration lacks


Action = Callable[[App, Trigger], Any]  # returns a pipeline.Outcome or a pipeline.RunOutcome


def dispatch(app: App, trigger: Trigger) -> Any:
    """Run what a trigger asks for (pipeline.dispatch of the same request)."""
    return pipeline.dispatch(app, pipeline.Request.from_trigger(trigger))


@contextmanager
def _guarded() -> Iterator[None]:
    before = os.environ.get(GUARD)
    os.environ[GUARD] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(GUARD, None)
        else:
            os.environ[GUARD] = before


def drain(
    app: App,
    *,
    follow: bool = False,
    poll: float = 1.0,
    action: Action = dispatch,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Consume the queue (with `follow`, until interrupted); returns the `triggers` rows written."""
    queue_dir = app.config.queue_dir
    rows: list[dict[str, Any]] = []
    if not follow and not queue_dir.is_dir():
        log.info("the queue is empty (%s does not exist)", queue_dir)
        return rows
    app.db  # noqa: B018 - open and migrate before claiming anything
    claim = queue.Claim(queue_dir)
    beat, waited = 0.0, 0.0
    deferred: dict[Path, tuple[Trigger | MalformedTrigger, float, float]] = {}  # path: (trigger, due, delay)

    def consume(path: Path, item: Trigger | MalformedTrigger, delay: float) -> int:
        try:
            record = _consume(app, claim, path, item, action)
        except TRANSIENT:  # it stays claimed by this live drain: run it again once the database takes writes
            deferred[path] = (item, time.monotonic(), delay)
            raise
        if record is None:  # its project is locked: try again later, it stays claimed (and queued)
            deferred[path] = (item, time.monotonic() + delay, min(delay * 2, RETRY_MAX))
            return 0
        deferred.pop(path, None)
        if not follow:  # a follower runs for weeks: it reports through on_record only
            rows.append(record)
        if on_record:
            on_record(record)
        return 1

    try:
        with _guarded():
            while True:
                done = 0
                try:
                    for path, item in queue.claimed(claim):
                        done += consume(path, item, RETRY_FIRST)
                    for path, (item, due, delay) in list(deferred.items()):
                        if due <= time.monotonic():
                            done += consume(path, item, delay)
                except TRANSIENT as e:  # a full disk or a locked database: a follower waits it out
                    if not follow:
                        raise
                    waited = min(max(waited * 2, 1.0), RETRY_MAX)
                    log.warning("the database or the queue cannot be written (%s); retrying in %gs", e, waited)
                    time.sleep(waited)
                    continue
                waited = 0.0
                if done or time.monotonic() - beat > HEARTBEAT:
                    what = f"following the queue (pid {os.getpid()})" if follow else "drained the queue"
                    waiting = f", {len(deferred)} waiting for a locked project" if deferred else ""
                    _heartbeat(app, f"{what}; {done} trigger(s) consumed in the last pass{waiting}")
                    beat = time.monotonic()
                if not follow and not deferred:
                    break
                next_due = min((due for _, due, _ in deferred.values()), default=time.monotonic() + poll)
                time.sleep(max(0.05, min(poll, next_due - time.monotonic())))
    finally:
        claim.close()
    if not rows and not follow:
        log.info("the queue is empty")
    return rows


def _heartbeat(app: App, text: str) -> None:
    records.set_status(app.db, "drain.status", text)  # the dashboard's Queue card shows it with its age


def _consume(
    app: App, claim: queue.Claim, path: Path, item: Trigger | MalformedTrigger, action: Action
) -> dict[str, Any] | None:
    """Run and record one trigger; None (nothing recorded, the file kept) when its project is locked."""
    consumed_at = records.now()
    aside = "malformed"
    if isinstance(item, Trigger):
        try:
            app.config.project(item.project)
        except ConfigError as e:  # another configuration's trigger in a shared queue: not malformed
            item, aside = MalformedTrigger(f"{e}; queue it again under the configuration that has it"), UNKNOWN
    if isinstance(item, MalformedTrigger):
        moved = queue.reject(claim.queue_dir, path, str(item))
        log.warning("moved %s aside to %s: %s", path.name, moved.parent, item)
        row = _fields_if_any(moved)
        row.update(consumed_at=consumed_at, status=aside, file=path.name, detail=str(item))
    else:
        log.info("%s: %s from %s (%s)", item.project, item.kind, item.source, path.name)
        try:
            outcome = action(app, item)
            if outcome.status == "already-running":
                log.info("%s: locked by another run; %s stays queued", item.project, path.name)
                return None
            status = "failed" if outcome.status == "failed" else "done"
            detail = outcome.status + (f": {outcome.error}" if outcome.error else "")
            run_id = outcome.run_id
        except PimaintenoError as e:
            status, detail, run_id = "failed", str(e), None
        except Exception as e:  # a bug in one action must not stop the queue; the log keeps the traceback
            log.error("%s: unexpected %s: %s", path.name, type(e).__name__, e, exc_info=app.verbosity > 0)
            status, detail, run_id = "failed", f"unexpected {type(e).__name__}: {e}", None
        if item.attempts:
            detail += f" (attempt {item.attempts + 1}; an earlier drain died running it)"
        row = {
            "project": item.project, "kind": item.kind, "source": item.source, "reason": item.reason,
            "failure_id": item.failure_id, "proposal_id": item.proposal_id, "requested_at": item.requested_at,
            "consumed_at": consumed_at, "run_id": run_id, "status": status, "file": path.name, "detail": detail,
        }  # fmt: skip
    row["id"] = records.add_trigger(app.db, row)
    if isinstance(item, Trigger):
        os.unlink(path)  # only once recorded: a drain killed before this runs the trigger again
    return row


def _fields_if_any(moved: Path) -> dict[str, Any]:
    """What can still be read from a malformed file (its project, kind...) for the record."""
    import json

    try:
        data = json.loads(moved.read_bytes()[: queue.MAX_BYTES]) if moved.is_file() else {}
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply
        data = {}
    if not isinstance(data, dict):
        return {}
    keep = ("project", "kind", "source", "reason", "requested_at")
    return {k: data[k] for k in keep if isinstance(data.get(k), str)}


def print_record(r: dict[str, Any]) -> None:
    run = f" run #{r['run_id']}" if r.get("run_id") else ""
    print(f"{r.get('project') or '?'}: {r.get('kind') or '?'} from {r.get('source') or '?'} — {r['status']}{run}: {r['detail']}",
          file=sys.stderr)  # fmt: skip
