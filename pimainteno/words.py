"""Counted nouns in messages: "1 file", "2 files" (one place, so no message says "1 files")."""

from __future__ import annotations


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """`n` and the noun, singular for exactly one."""
    return f"{n} {noun if n == 1 else plural_form or noun + 's'}"
