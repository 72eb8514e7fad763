"""The forms a configuration value must have beyond its type: names, units, commands, URLs.

Each check returns None when the value fits, else what was expected (the error says it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # compiled on first use (re caches it)
UNIT = r"[A-Za-z0-9:_.\\@-]{1,255}"


COMMAND = "a command (a shell string or a non-empty list of arguments)"


def command(v: Any) -> str | None:
    ok = v.strip() if isinstance(v, str) else (v and all(isinstance(x, str) for x in v))
    return None if ok else COMMAND


def name(v: str) -> str | None:
    return None if re.fullmatch(NAME, v) else "letters, digits, '.', '_' or '-' (at most 64)"


def unit(v: str) -> str | None:
    return None if re.fullmatch(UNIT, v) else "a systemd unit name (letters, digits, ':', '_', '.', '\\', '@', '-')"


def units(v: tuple[str, ...]) -> str | None:
    return next((unit(u) for u in v if unit(u)), None)


def author(v: str) -> str | None:
    return None if not v or re.fullmatch(r"[^<>]+ <[^<>]+>", v) else "'Name <email>'"


def summary_file(v: str) -> str | None:
    bad = Path(v).is_absolute() or ".." in Path(v).parts
    return 'a file name inside the project (or "" to disable)' if v and bad else None


def health_form(v: str) -> str | None:
    """A health probe: an http(s) URL, tcp://host:port, or a trusted shell command."""
    from urllib.parse import urlsplit

    expected = "a command, an http:// or https:// URL, or tcp://host:port"
    if not v.strip():
        return expected
    scheme = v.split("://", 1)[0].lower() if "://" in v else ""
    try:
        parts = urlsplit(v)
        port = parts.port
    except ValueError:
        return expected
    if scheme in ("http", "https"):
        return None if parts.hostname else expected
    if scheme == "tcp":
        return None if parts.hostname and port and parts.path in ("", "/") else expected
    return None


def notify_urls(v: tuple[str, ...]) -> str | None:
    expected = "apprise URLs such as 'ntfy://topic' or 'json://host/path'"
    if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", u) for u in v):
        return expected
    from pimainteno.notify import url_problem  # apprise itself says whether it can use each URL

    problems = [p for p in (url_problem(u) for u in v) if p]
    return f"{expected}; {problems[0]}" if problems else None


def web_url(v: str | None) -> str | None:
    from urllib.parse import urlsplit

    ok = v is None or (urlsplit(v).scheme in ("http", "https") and bool(urlsplit(v).hostname))
    return None if ok else "an http:// or https:// URL"


def sandbox_shorthand(v: Any) -> Any:
    return {"enabled": v} if isinstance(v, bool) else v
