"""What every provider offers, how its calls are accounted, and the prompts they share."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pimainteno import db as dbm
from pimainteno.config import Project

PROMPT_BUDGET = 32_000  # bytes of context per patch request


@dataclass
class Call:
    """The outcome of one provider operation, as recorded in `llm_calls`."""

    outcome: str = "ok"  # ok, failed, timeout, error
    text: str = ""
    error: str | None = None
    exit_status: int | None = None
    thread_id: str | None = None
    model: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    prompt_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class Provider(Protocol):
    name: str

    def summarize(self, project: Project, worktree: Path) -> Call: ...

    def propose(self, project: Project, worktree: Path, prompt: str) -> Call: ...

    def commit_message(self, project: Project, worktree: Path, diff: str) -> Call: ...


@contextmanager
def accounted(
    db: Any, provider: str, purpose: str, project: str, run_id: int | None = None
) -> Iterator[dict[str, Call]]:
    """Record one provider call in `llm_calls`, whatever happens inside (errors included)."""
    started, t0 = dbm.now(), time.monotonic()
    box: dict[str, Call] = {}
    try:
        yield box
    except BaseException as e:
        box.setdefault("call", Call(outcome="error", error=str(e) or type(e).__name__))
        raise
    finally:
        call = box.get("call") or Call(outcome="error", error="no result")
        dbm.insert(
            db,
            "llm_calls",
            {
                "project": project, "run_id": run_id, "provider": provider, "purpose": purpose,
                "model": call.model, "started_at": started, "duration_s": round(time.monotonic() - t0, 3),
                "exit_status": call.exit_status, "outcome": call.outcome, "thread_id": call.thread_id,
                "input_tokens": call.usage.get("input_tokens"), "cached_tokens": call.usage.get("cached_tokens"),
                "output_tokens": call.usage.get("output_tokens"),
                "reasoning_tokens": call.usage.get("reasoning_tokens"), "prompt_bytes": call.prompt_bytes,
                "error": call.error,
            },
        )  # fmt: skip


def get_provider(name: str, llm: Any, command: Any = None) -> Provider:
    if name == "codex":
        from pimainteno.providers.codex import CodexProvider

        return CodexProvider(llm)
    if name == "command":
        from pimainteno.providers.command import CommandProvider

        return CommandProvider(command or llm.command, llm.timeout)
    from pimainteno.errors import ConfigError

    raise ConfigError(f'provider {name!r} is not available; use "codex" or "command" in [llm] provider')


# --- prompts ---------------------------------------------------------------------------------

SUMMARY_PROMPT = (
    "Summarize this software project for its maintainer in at most 250 words: what it does, how it "
    "is laid out, how its tests are run, and anything that looks fragile. Do not change any file. "
    "Reply with the summary only, as Markdown."
)

PATCH_PROMPT = """You maintain the project "{name}" in the current directory.
Make one small, safe change that {goal}. Edit the files directly; do not commit, do not create
branches, do not touch anything outside this directory. If nothing needs changing, change nothing.
Keep the project's style. The change will be proven by the project's tests before anyone uses it.
"""

COMMIT_PROMPT = (
    "Write the subject line of a git commit for the diff below: one imperative sentence, at most "
    "72 characters, no trailing period, no quotes. Reply with that line only.\n\n"
)


def patch_prompt(project: Project, sections: list[tuple[str, str | None]], goal: str) -> str:
    """The patch request: instructions, then each non-empty section, within PROMPT_BUDGET bytes."""
    from pimainteno.procs import tail

    text = PATCH_PROMPT.format(name=project.name, goal=goal)
    parts = [(title, body) for title, body in sections if body and body.strip()]
    budget = PROMPT_BUDGET - len(text.encode()) - 200
    for i, (title, body) in enumerate(parts):
        share = budget // (len(parts) - i)
        piece = f"\n## {title}\n\n{tail(body.strip(), max(share - len(title) - 8, 200))}\n"
        budget -= len(piece.encode())
        text += piece
    return text


def clean_subject(text: str) -> str | None:
    """The first usable line of a model's commit message, trimmed to 72 characters, or None."""
    for line in text.strip().splitlines():
        line = re.sub(r"^(subject|commit message)\s*:\s*", "", line.strip().strip("`*\"' "), flags=re.I)
        line = "".join(ch for ch in line if ch.isprintable()).strip().rstrip(".")
        if line and not line.startswith("```"):
            return line if len(line) <= 72 else line[:69].rsplit(" ", 1)[0] + "..."
    return None


def fallback_subject(files: list[str], what: str = "Update") -> str:
    """A deterministic commit subject for when no model is asked or it fails."""
    if not files:
        return f"{what} project files"
    names = [Path(f).name for f in files]
    subject = f"{what} {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return subject if len(subject) <= 72 else f"{what} {len(files)} files"
