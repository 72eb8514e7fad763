"""The prompts every provider shares, and how a model's commit subject is cleaned or replaced."""

from __future__ import annotations

import re
from pathlib import Path

from pimainteno.config import Project
from pimainteno.procs import tail
from pimainteno.words import plural

PROMPT_BUDGET = 32_000  # bytes of context per patch request

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

# Asked of a provider that can answer in a structured final message (codex --output-schema).
PATCH_ANSWER = """
When you are done, answer with `commit_subject`: the subject line of a git commit for your change
(one imperative sentence, at most 72 characters, no trailing period), and `explanation`: what you
changed and why, in a few sentences. If you changed nothing, say why in `explanation`.
"""

COMMIT_PROMPT = (
    "Write the subject line of a git commit for the diff below: one imperative sentence, at most "
    "72 characters, no trailing period, no quotes. Reply with that line only.\n\n"
)


def patch_prompt(project: Project, sections: list[tuple[str, str | None]], goal: str) -> str:
    """The patch request: instructions, then each non-empty section, within PROMPT_BUDGET bytes."""
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
    return subject if len(subject) <= 72 else f"{what} {plural(len(files), 'file')}"
