"""What the chain is asked to do (one type for `run`, `drain` and `heal`) and what it reports back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from pimainteno import errors
from pimainteno.config import MODES  # how far an automatic run may go, in chain order: declared there once
from pimainteno.records import scrub

if TYPE_CHECKING:
    from pimainteno.queue import Trigger

__all__ = ["MODES", "Request", "RunOutcome", "exit_code"]


@dataclass(frozen=True)
class Request:
    """One request for the chain: a run, a heal (failure_id), applying or rejecting a stored proposal."""

    project: str
    kind: str = "run"  # run, heal, apply, reject
    source: str = "cli"  # recorded as the run's trigger: cli, timer, hook, dashboard, watch, on-failure, demo
    reason: str | None = None
    failure_id: int | None = None
    proposal_id: int | None = None
    mode: str | None = None  # None: the project's configured mode
    retry_known: bool = False  # try a change again although the same one was rejected or rolled back before

    @classmethod
    def from_trigger(cls, t: Trigger) -> Request:
        return cls(
            project=t.project, kind=t.kind, source=t.source, reason=t.reason,
            failure_id=t.failure_id if t.kind == "heal" else None,
            proposal_id=t.proposal_id if t.kind in ("apply", "reject") else None,
        )  # fmt: skip


@dataclass(frozen=True)
class RunOutcome:
    project: str
    status: str  # ok, nothing, failed, rejected, rolled_back, interrupted, already-running
    run_id: int | None = None
    error: str | None = None
    proposal_id: int | None = None
    commit_sha: str | None = None
    exit_code: int = errors.OK  # what `run` exits with for this outcome

    def __post_init__(self) -> None:
        # Printed by `run`/`drain` (--json too) and kept in `triggers`: a secret quoted by a tool never shows.
        object.__setattr__(self, "error", scrub(self.error))

    def but(self, **changes: Any) -> RunOutcome:
        return replace(self, **changes)

    def line(self) -> str:
        bits = [f"{self.project}: {self.status}"]
        if self.run_id:
            bits.append(f"run #{self.run_id}")
        if self.proposal_id:
            bits.append(f"proposal #{self.proposal_id}")
        if self.commit_sha:
            bits.append(f"commit {self.commit_sha[:12]}")
        if self.error:  # the line starts with the project's name already
            bits.append(self.error.removeprefix(f"{self.project}: "))
        return " — ".join(bits)

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "exit_code"})


def exit_code(outcomes: list[RunOutcome]) -> int:
    """The worst outcome's code: a tool failure, then a failed validation or rollback, then a refused patch."""
    codes = {o.exit_code for o in outcomes}
    for code in (errors.TOOL_FAILED, errors.VALIDATION_FAILED, errors.BAD_INPUT):
        if code in codes:
            return code
    return errors.OK
