"""The proposal lifecycle: one StrEnum, the allowed transitions declared once, one function enforcing them.

    proposed ─┬─ approved ─┐          (approved: a person said yes; the proposal still needs proving)
              ├────────────┴─ validated / checked ─┬─ applied ── committed ── pushed ── rolled_back
              │                                    └─ committed ─┘      └── rolled_back
              └─ rejected, stale, failed, discarded (also reachable from approved, validated, checked)

`validated`: the project's tests passed on it; `checked`: it passed the patch policy and applies, but
no test command proved it. Every transition is a `proposal_events` row with its actor and reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pimainteno.errors import InputError
from pimainteno.records.base import insert, now, update

if TYPE_CHECKING:
    import sqlite_utils


class ProposalStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"  # by the policy, the tests or a person
    STALE = "stale"  # no longer applies at HEAD
    VALIDATED = "validated"
    CHECKED = "checked"
    APPLIED = "applied"  # staged in the project's working tree (apply by hand, or mode = apply)
    COMMITTED = "committed"
    PUSHED = "pushed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # a tool failed on the way (the commit could not be brought in...)
    DISCARDED = "discarded"


S = ProposalStatus
_ENDINGS = (S.REJECTED, S.STALE, S.FAILED, S.DISCARDED)
TRANSITIONS: dict[ProposalStatus, frozenset[ProposalStatus]] = {
    S.PROPOSED: frozenset({S.APPROVED, S.VALIDATED, S.CHECKED, S.APPLIED, *_ENDINGS}),
    S.APPROVED: frozenset({S.VALIDATED, S.CHECKED, S.APPLIED, *_ENDINGS}),
    S.VALIDATED: frozenset({S.APPLIED, S.COMMITTED, *_ENDINGS}),
    S.CHECKED: frozenset({S.APPLIED, S.COMMITTED, *_ENDINGS}),
    S.APPLIED: frozenset({S.COMMITTED, S.FAILED, S.DISCARDED}),
    S.COMMITTED: frozenset({S.PUSHED, S.ROLLED_BACK, S.FAILED}),
    S.PUSHED: frozenset({S.ROLLED_BACK}),
    S.REJECTED: frozenset(),
    S.STALE: frozenset(),
    S.FAILED: frozenset(),
    S.DISCARDED: frozenset(),
    S.ROLLED_BACK: frozenset(),
}
WAITING = frozenset({S.PROPOSED, S.APPROVED})  # may still be approved, rejected or applied
_DECISIONS = frozenset({S.APPROVED, S.REJECTED, S.DISCARDED})  # recorded as decided_by / decided_at


class IllegalTransition(InputError):
    """A proposal asked to move where its lifecycle does not go (the message says from where to where)."""


@dataclass(frozen=True)
class Proposal:
    id: int
    project: str
    diff: str
    files: list[str]
    added: int
    removed: int
    base_head: str
    status: ProposalStatus = S.PROPOSED
    fingerprint: str | None = None


def add_proposal(
    db: sqlite_utils.Database,
    *,
    project: str,
    diff: str,
    base_head: str,
    files: list[str],
    added: int,
    removed: int,
    fingerprint: str | None,
    provider: str | None = None,
    reason: str | None = None,
    failure_id: int | None = None,
    run_id: int | None = None,
) -> Proposal:
    """Store a new `proposed` proposal (fingerprint: `git patch-id --stable` of its diff) and its first event."""
    stamp = now()
    proposal_id = insert(db, "proposals", {
        "project": project, "run_id": run_id, "created_at": stamp, "updated_at": stamp, "base_head": base_head,
        "provider": provider, "reason": reason, "failure_id": failure_id, "status": S.PROPOSED.value,
        "files": files, "added": added, "removed": removed, "diff": diff, "fingerprint": fingerprint,
    })  # fmt: skip
    _event(db, proposal_id, None, S.PROPOSED, provider or "pimainteno", reason)
    return Proposal(proposal_id, project, diff, files, added, removed, base_head, S.PROPOSED, fingerprint)


def get_proposal(db: sqlite_utils.Database, proposal_id: int) -> Proposal:
    found = list(db.table("proposals").rows_where("id = ?", [proposal_id], limit=1))
    if not found:
        raise InputError(f"no proposal #{proposal_id}; see the proposals table on the dashboard")
    r = found[0]
    return Proposal(r["id"], r["project"], r["diff"], json.loads(r["files"] or "[]"), r["added"], r["removed"],
                    r["base_head"], S(r["status"]), r["fingerprint"])  # fmt: skip


def transition(
    db: sqlite_utils.Database,
    proposal_id: int,
    to: ProposalStatus | str,
    *,
    actor: str,
    reason: str | None = None,
    expect: ProposalStatus | str | None = None,
    **fields: Any,
) -> ProposalStatus:
    """Move a proposal to ``to`` if its lifecycle allows it, recording actor and reason; returns the old status.

    ``expect`` also refuses unless the proposal is in that status now. ``fields`` are other proposal
    columns to set in the same transaction (e.g. ``test_output``). Refusals are one-line IllegalTransition.
    """
    from pimainteno.db import transaction

    target = S(to)
    with transaction(db):
        found = list(db.table("proposals").rows_where("id = ?", [proposal_id], select="status", limit=1))
        if not found:
            raise InputError(f"no proposal #{proposal_id}; see the proposals table on the dashboard")
        current = S(found[0]["status"])
        if expect is not None and current != S(expect):
            raise IllegalTransition(f"proposal #{proposal_id} is {current}, not {S(expect)}; not marking it {target}")
        if target not in TRANSITIONS[current]:
            allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing: it is final"
            raise IllegalTransition(
                f"proposal #{proposal_id} is {current} and cannot become {target} (it can become {allowed})"
            )
        stamp = now()
        values: dict[str, Any] = {"status": target.value, "updated_at": stamp, **fields}
        if reason is not None:
            values["status_reason"] = reason
        if target in _DECISIONS:
            values.update(decided_by=actor, decided_at=stamp)
        update(db, "proposals", proposal_id, values)
        _event(db, proposal_id, current, target, actor, reason)
    return current


def _event(db: sqlite_utils.Database, proposal_id: int, old: ProposalStatus | None, new: ProposalStatus, actor: str,
           reason: str | None) -> None:  # fmt: skip
    insert(db, "proposal_events", {
        "proposal_id": proposal_id, "at": now(), "from_status": old.value if old else None, "to_status": new.value,
        "actor": actor, "reason": reason,
    })  # fmt: skip


REMEMBERED = (S.REJECTED, S.ROLLED_BACK)  # failed fixes: an automatic run never tries the same change again


def failed_before(db: sqlite_utils.Database, project: str, fingerprint: str | None, *,
                  other_than: int | None = None) -> str | None:  # fmt: skip
    """Why the change with this fingerprint is known to fail in ``project`` ("rolled back in run #N",
    "rejected in proposal #N: reason"), or None when it never failed (or has no fingerprint)."""
    if not fingerprint:
        return None
    marks = ", ".join("?" for _ in REMEMBERED)
    found = list(db.table("proposals").rows_where(
        f"project = ? AND fingerprint = ? AND status IN ({marks}) AND id != ?",
        [project, fingerprint, *REMEMBERED, other_than or 0], order_by="id DESC", limit=1,
        select="id, status, status_reason",
    ))  # fmt: skip
    if not found:
        return None
    row = found[0]
    if row["status"] == S.ROLLED_BACK:
        commits = list(db.table("commits").rows_where("proposal_id = ? AND kind = 'patch'", [row["id"]],
                                                       select="run_id", order_by="id DESC", limit=1))  # fmt: skip
        run_id = commits[0]["run_id"] if commits else None
        return f"rolled back in run #{run_id}" if run_id else f"rolled back (proposal #{row['id']})"
    said = (row["status_reason"] or "").splitlines()[0][:200] if row["status_reason"] else ""
    return f"rejected in proposal #{row['id']}" + (f" ({said})" if said else "")


def decided(db: sqlite_utils.Database, proposal_id: int) -> str:
    """What became of a proposal, in one line: "proposal #3 was rejected by dashboard (reason)", "... is pushed"."""
    found = list(db.table("proposals").rows_where("id = ?", [proposal_id], limit=1,
                                                   select="status, decided_by, status_reason"))  # fmt: skip
    if not found:
        return f"no proposal #{proposal_id}"
    row = found[0]
    status, by = S(row["status"]), row["decided_by"]
    said = (row["status_reason"] or "").strip().splitlines()
    reason = f" ({said[0][:200]})" if said else ""
    if status in (S.REJECTED, S.DISCARDED, S.APPROVED) and by:
        return f"proposal #{proposal_id} was {status} by {by}{reason}"
    approved = f", approved by {by}" if by else ""
    return f"proposal #{proposal_id} is {status}{approved}{reason}"


def proposal_row(db: sqlite_utils.Database, proposal_id: int) -> dict[str, Any] | None:
    found = list(db.table("proposals").rows_where("id = ?", [proposal_id], limit=1,
                                                  select="id, status, status_reason, commit_subject, files"))  # fmt: skip
    return found[0] if found else None


def set_commit_subject(db: sqlite_utils.Database, proposal_id: int, subject: str | None) -> None:
    """The subject the patch call gave with its diff (None: none or malformed; the commit asks separately)."""
    update(db, "proposals", proposal_id, {"commit_subject": subject})


def commit_subject_of(db: sqlite_utils.Database, proposal_id: int) -> str | None:
    found = list(db.table("proposals").rows_where("id = ?", [proposal_id], select="commit_subject", limit=1))
    return found[0]["commit_subject"] if found else None
