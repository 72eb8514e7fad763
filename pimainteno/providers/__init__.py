"""Providers turn a prompt into a change in a worktree: `codex` (the real CLI) or `command` (a fixer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pimainteno.providers.base import Provider


def get_provider(name: str, llm: Any, command: Any = None) -> Provider:
    """The provider called `name`, built from the [llm] section (and a project's fixer command)."""
    if name == "codex":
        from pimainteno.providers.codex import CodexProvider

        return CodexProvider(llm)
    if name == "command":
        from pimainteno.providers.command import CommandProvider

        return CommandProvider(command or llm.command, llm.timeout)
    from pimainteno.errors import ConfigError

    raise ConfigError(f'provider {name!r} is not available; use "codex" or "command" in [llm] provider')
