"""What a queued trigger asks for, done: a run, a heal, applying (approving) or rejecting a stored proposal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pimainteno import records
from pimainteno.errors import InputError
from pimainteno.pipeline.request import Request, RunOutcome
from pimainteno.records import ProposalStatus

if TYPE_CHECKING:
    from pimainteno.app import App


@dataclass(frozen=True)
class Outcome:
    """What an action other than a run did, in the shape the `triggers` table records."""

    status: str
    run_id: int | None = None
    error: str | None = None


def dispatch(app: App, request: Request) -> RunOutcome | Outcome:
    """Run what a request asks for; everything it runs carries the guard so our hook queues nothing more."""
    if request.kind == "reject":
        return reject_proposal(app, request)
    from pimainteno.pipeline.chain import run

    return run(app, request)  # git() itself sets the guard on every git it runs (git._ENV)


def reject_proposal(app: App, request: Request) -> Outcome:
    """The dashboard's Reject button: a proposal nobody decided on yet becomes `rejected`, decided by the requester."""
    if request.proposal_id is None:
        return Outcome("failed", error="a reject request names no proposal")
    try:
        proposal = records.get_proposal(app.db, request.proposal_id)
    except InputError:
        proposal = None
    if proposal is None or proposal.project != request.project:
        return Outcome("failed", error=f"no proposal #{request.proposal_id} for {request.project}")
    if proposal.status != ProposalStatus.PROPOSED:  # approve and reject are exclusive: the first decision stands
        return Outcome("failed", error=f"{records.decided(app.db, proposal.id)}; not rejecting it")
    try:
        records.transition(app.db, proposal.id, ProposalStatus.REJECTED, actor=request.source,
                           reason=request.reason or f"rejected on the {request.source}", expect=proposal.status)  # fmt: skip
    except records.IllegalTransition as e:  # it moved on meanwhile
        return Outcome("failed", error=str(e))
    return Outcome("rejected")
