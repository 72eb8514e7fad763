"""Every read and write of pimainteno's tables, one module per table, through sqlite-utils' Table API.

    base        now(), scrub() of known secrets, the key/value `status` table, `projects`
    proposals   the proposal lifecycle: ProposalStatus, the allowed transitions, transition()
    runs        `runs`, `summaries`, `llm_calls`, `triggers`
    commits     `commits`: pimainteno's own commits and reverts, and whether they are pushed
    failures    `failures` and `restarts`
    notifications  `notifications`: what was told to whom (the target's scheme only)
    read        plain-sqlite3 reads for commands that only look (`status`): no sqlite-utils import

Every text stored passes through scrub() first, so no configured secret reaches the database.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time each name is imported from its module on first use (__getattr__ below)
    from pimainteno.records.base import (
        REDACTED,
        delete_status,
        get_status,
        insert,
        now,
        remember_secrets,
        rows,
        scrub,
        secrets_of,
        set_status,
        status_value,
        sync_projects,
        update,
    )
    from pimainteno.records.commits import (
        add_commit,
        commit_row,
        forget_commit,
        mark_pushed,
        mark_reverted,
        note_push_error,
        replace_sha,
        unpushed,
    )
    from pimainteno.records.failures import (
        RESTARTING,
        add_failure,
        add_restart,
        announce_restart,
        count_heals_since,
        end_heal,
        end_restart,
        failure_row,
        finish_restart,
        known_failure,
        last_healthy_restart,
        latest_failure_at,
        prune_failures,
        recent_failure,
        restarting_keys,
        restarting_run,
        rolled_back_heals,
        run_alive,
        unfinished_restarts,
        update_failure,
        withdraw_restart,
    )
    from pimainteno.records.notifications import (
        add_notification,
        notifications_held_since_last_sent,
        notifications_sent_since,
    )
    from pimainteno.records.proposals import (
        TRANSITIONS,
        WAITING,
        IllegalTransition,
        Proposal,
        ProposalStatus,
        add_proposal,
        commit_subject_of,
        decided,
        failed_before,
        get_proposal,
        proposal_row,
        set_commit_subject,
        transition,
    )
    from pimainteno.records.runs import (
        add_llm_call,
        add_summary,
        add_trigger,
        cached_summary,
        finish_run,
        last_runs,
        last_summary,
        running_runs,
        start_run,
        update_run,
    )

__all__ = [
    "RESTARTING",
    "announce_restart",
    "end_restart",
    "restarting_run",
    "withdraw_restart",
    "insert", "update",  # a row of any table, scrubbed (what db.insert/db.update were)
    "add_notification", "commit_subject_of", "last_summary", "notifications_held_since_last_sent",
    "notifications_sent_since", "proposal_row", "set_commit_subject",
    "last_healthy_restart", "latest_failure_at", "prune_failures", "recent_failure", "restarting_keys", "run_alive",
    "unfinished_restarts", "replace_sha", "rolled_back_heals",
    "REDACTED", "TRANSITIONS", "WAITING", "IllegalTransition", "Proposal", "ProposalStatus", "add_commit",
    "add_failure", "add_llm_call", "add_proposal", "decided", "failed_before", "add_restart", "add_summary", "add_trigger", "cached_summary",
    "commit_row", "count_heals_since", "delete_status", "end_heal", "failure_row", "finish_restart", "finish_run",
    "forget_commit", "get_proposal", "get_status", "known_failure", "last_runs", "mark_pushed", "mark_reverted",
    "note_push_error", "now", "remember_secrets", "rows", "running_runs", "scrub", "secrets_of", "set_status",
    "start_run", "status_value", "sync_projects", "transition", "unpushed", "update_failure", "update_run",
]  # fmt: skip

# Searched in this order for a name of __all__; importing them all cost every start (`status`) ~9 ms.
_MODULES = ("base", "commits", "failures", "notifications", "proposals", "runs")
_ABSENT = object()


def __getattr__(name: str) -> Any:
    if name in _MODULES:  # `records.base`, as when the package imported them all
        return importlib.import_module(f"{__name__}.{name}")
    if name in __all__:
        for module in _MODULES:
            found = importlib.import_module(f"{__name__}.{module}").__dict__.get(name, _ABSENT)
            if found is not _ABSENT:
                globals()[name] = found
                return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
