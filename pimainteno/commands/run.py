"""`pimainteno run`: the whole chain for each named project (pimainteno/pipeline does the work)."""

from __future__ import annotations

from collections.abc import Callable

from pimainteno import pipeline
from pimainteno.app import App
from pimainteno.pipeline import Request, RunOutcome, exit_code

__all__ = ["as_json", "exit_code", "run_many", "summary_line"]


def run_many(app: App, names: list[str], *, keep_going: bool, on_outcome: Callable[[RunOutcome], object],
             trigger: str = "cli", failure_id: int | None = None, reason: str | None = None,
             retry_known: bool = False) -> list[RunOutcome]:  # fmt: skip
    """Run each project in turn; with keep_going one project's error does not stop the others."""
    kind = "heal" if failure_id is not None else "run"
    requests = [Request(name, kind=kind, source=trigger, reason=reason, failure_id=failure_id, retry_known=retry_known)
                for name in names]  # fmt: skip
    return pipeline.run_many(app, requests, keep_going=keep_going, on_outcome=on_outcome)


def summary_line(o: RunOutcome) -> str:
    return o.line()


def as_json(o: RunOutcome) -> str:
    return o.to_json()
