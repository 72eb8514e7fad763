"""What every provider offers.

The record, the prompts and `get_provider` live in their own modules (`call`, `prompts`, the
package); they are re-exported here for the callers that import them from `base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pimainteno.config import Project
from pimainteno.providers import get_provider
from pimainteno.providers.call import Call, accounted
from pimainteno.providers.prompts import (
    COMMIT_PROMPT,
    PATCH_PROMPT,
    PROMPT_BUDGET,
    SUMMARY_PROMPT,
    clean_subject,
    fallback_subject,
    patch_prompt,
)

__all__ = [
    "COMMIT_PROMPT", "PATCH_PROMPT", "PROMPT_BUDGET", "SUMMARY_PROMPT", "Call", "Provider", "accounted",
    "clean_subject", "fallback_subject", "get_provider", "patch_prompt",
]  # fmt: skip


class Provider(Protocol):
    name: str

    def summarize(self, project: Project, worktree: Path) -> Call: ...

    def propose(self, project: Project, worktree: Path, prompt: str) -> Call: ...

    def commit_message(self, project: Project, worktree: Path, diff: str) -> Call: ...
