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


def scheme(url: str) -> str:
    """The part of an apprise URL that is safe to show: its scheme."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).scheme.lower() or "?"
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        return "?"


def url_problem(url: str) -> str | None:
    """Why apprise cannot use ``url``, or None; never echoes the URL itself (it carries tokens)."""
    import apprise  # apprise itself says whether it can use each URL

    if apprise.Apprise().add(url):
        return None
    return f"apprise does not understand a {scheme(url)}:// URL (see https://github.com/caronc/apprise/wiki)"


def notify_urls(v: tuple[str, ...]) -> str | None:
    expected = "apprise URLs such as 'ntfy://topic' or 'json://host/path'"
    if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", u) for u in v):
        return expected
    problem = _first_problem(v)
    return f"{expected}; {problem}" if problem else None


ACCEPTED_KEPT = 64  # accepted URLs remembered (as digests)


def _first_problem(urls: tuple[str, ...]) -> str | None:
    """apprise's verdict on each URL, asked only for URLs this apprise has not accepted before.

    Asking loads apprise and every plugin of it (~0.25 s here, more on a Pi) on each start of each
    command; an accepted URL is remembered in the user's cache directory as a digest of apprise's
    installed place and modification time and the URL (never the URL: it carries tokens). A refused
    URL is asked again every time. Best effort: an unwritable cache only means asking again."""
    import hashlib
    import importlib.util
    import os

    spec = importlib.util.find_spec("apprise")
    try:
        stamp = f"{spec.origin}\0{os.stat(spec.origin).st_mtime_ns}" if spec and spec.origin else None
    except OSError:
        stamp = None
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    try:  # a relative XDG_CACHE_HOME is to be ignored (the XDG base directory specification)
        cache = (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "pimainteno" / "apprise-accepted"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry: nowhere to remember, ask every time
        stamp, cache = None, Path(os.devnull)
    digests = {u: hashlib.sha256(f"{stamp}\0{u}".encode("utf-8", "surrogateescape")).hexdigest() for u in urls}
    try:
        known = cache.read_text().split() if stamp else []
    except (OSError, UnicodeDecodeError):
        known = []
    asked = [u for u in urls if digests[u] not in known]
    for url in asked:
        if problem := url_problem(url):
            return problem
    if asked and stamp:
        kept = list(dict.fromkeys([*known, *(digests[u] for u in asked)]))[-ACCEPTED_KEPT:]
        try:
            cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            part = cache.with_name(f".{cache.name}.{os.getpid()}")
            with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
                out.write("".join(f"{d}\n" for d in kept))
            part.replace(cache)
        except OSError:
            pass
    return None


def web_url(v: str | None) -> str | None:
    from urllib.parse import urlsplit

    try:
        ok = v is None or (urlsplit(v).scheme in ("http", "https") and bool(urlsplit(v).hostname))
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        ok = False
    return None if ok else "an http:// or https:// URL"


def sandbox_shorthand(v: Any) -> Any:
    return {"enabled": v} if isinstance(v, bool) else v


# --- [replicate]: the fleet's Litestream replica ----------------------------------------------------

HOST = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"  # a fleet host name: one path segment of the replica URL
REPLICA_SCHEMES = ("file", "sftp", "s3")


def short_hostname() -> str:
    """This machine's short host name, made into a valid fleet host name."""
    import socket

    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]).strip("-._")
    return name[:63] or "host"


def fleet_host(v: str) -> str | None:
    return None if re.fullmatch(HOST, v) else "a host name: letters, digits, '.', '_' or '-' (at most 63)"


def fleet_hosts(v: tuple[str, ...]) -> str | None:
    return next((fleet_host(h) for h in v if fleet_host(h)), None)


def hide_password(v: Any) -> Any:
    """A URL's password never reaches an error message (the URL is refused for holding one anyway)."""
    from urllib.parse import urlsplit

    if not isinstance(v, str):
        return v
    try:
        parts = urlsplit(v)
        if parts.password is None:
            return v
    except ValueError:
        return v
    return v.replace(f":{parts.password}@", ":***@", 1)


def replica_url(v: str) -> str | None:
    """A replica URL Litestream accepts: file:///absolute/dir, sftp://[user@]host/path or s3://bucket[/path]."""
    from urllib.parse import urlsplit

    if not v or any(c.isspace() for c in v):
        return "a replica URL without spaces, e.g. file:///mnt/nas/pimainteno"
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "a replica URL, e.g. file:///mnt/nas/pimainteno"
    if parts.scheme not in REPLICA_SCHEMES:
        return "a URL Litestream replicates to: file:///dir, sftp://user@host/dir or s3://bucket/dir"
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") or parts.query:
            return "a file URL with an absolute path, e.g. file:///mnt/nas/pimainteno"
        if any(p in (".", "..") for p in parts.path.split("/")):
            return "a file URL whose path has no '.' or '..'"
        return None
    if not parts.hostname:
        return "s3://bucket/dir (a bucket)" if parts.scheme == "s3" else "sftp://user@host/dir (a server)"
    if parts.password is not None:
        return "a URL without a password (put credentials in env_file)"
    return None


def env_file(v: Path) -> str | None:
    # systemd's EnvironmentFile= needs an absolute path; a relative one would depend on the directory
    return None if v.is_absolute() or str(v).startswith("~") else "an absolute path (or ~/...)"
