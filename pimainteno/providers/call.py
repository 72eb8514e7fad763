"""The record of one provider call (summary, patch, commit message) and how it is stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pimainteno import records

# The token counts a call may carry, as named in `llm_calls`.
USAGE_KEYS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")


@dataclass
class Call:
    """The outcome of one provider operation, as recorded in `llm_calls`.

    A codex run fills in everything; the command provider only what it knows.
    """

    outcome: str = "ok"  # ok, failed, timeout, error
    text: str = ""  # the final message (a summary, a commit subject, a fixer's output tail)
    error: str | None = None  # one line naming what failed and what to do next
    exit_status: int | None = None
    thread_id: str | None = None
    model: str | None = None
    usage: dict[str, int] = field(default_factory=dict)  # USAGE_KEYS
    prompt_bytes: int | None = None
    commit_subject: str | None = None  # from a structured final message; None when absent or malformed
    codex_version: str | None = None
    messages: list[str] = field(default_factory=list)  # every assistant message, in order
    commands: list[dict[str, Any]] = field(default_factory=list)  # command, exit_code, status, output
    file_changes: list[str] = field(default_factory=list)  # paths relative to the worktree
    duration_s: float = 0.0
    stderr_tail: str = ""
    llm_call_id: int | None = None  # its `llm_calls` row, once `accounted` has stored it

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def timed_out(self) -> bool:
        return self.outcome == "timeout"


@contextmanager
def accounted(
    db: Any, provider: str, purpose: str, project: str, run_id: int | None = None
) -> Iterator[dict[str, Call]]:
    """Record one provider call in `llm_calls`, whatever happens inside (errors included)."""
    started, t0 = records.now(), time.monotonic()
    box: dict[str, Call] = {}
    try:
        yield box
    except BaseException as e:
        box.setdefault("call", Call(outcome="error", error=str(e) or type(e).__name__))
        raise
    finally:
        call = box.get("call") or Call(outcome="error", error="no result")
        call.llm_call_id = records.add_llm_call(
            db,
            {
                "project": project, "run_id": run_id, "provider": provider, "purpose": purpose,
                "model": call.model, "started_at": started, "duration_s": round(time.monotonic() - t0, 3),
                "exit_status": call.exit_status, "outcome": call.outcome, "thread_id": call.thread_id,
                **{k: call.usage.get(k) for k in USAGE_KEYS}, "prompt_bytes": call.prompt_bytes,
                "error": call.error, "codex_version": call.codex_version,
            },
        )  # fmt: skip
