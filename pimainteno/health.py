"""Health probes: is a project's service really working, not only "active" in systemd's eyes.

A project's `health` is one of:

    http://host:port/path   healthy on a 2xx or 3xx answer within `health_timeout` (redirects are
    https://...             not followed: a 3xx is the service answering)
    tcp://host:port         healthy when a TCP connection opens within `health_timeout`
    anything else           a trusted shell command from the configuration (like `test`), healthy on
                            exit status 0; run in its own process group, killed at `health_timeout`

No probe ever runs through a shell unless it is the user's own command. Every probe is bounded in
wall time: a server that accepts the connection and then drips or never answers counts as a failure
at the deadline.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

OUTPUT_LIMIT = 2000  # bytes of a probe's output or body kept for the failure record


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str  # one line: what was checked and what came back
    output: str = ""  # the command's output or the start of the HTTP body, for the failure record
    seconds: float = 0.0


def kind(spec: str) -> str:
    """`http`, `tcp` or `command`: how ``spec`` is probed."""
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in ("http", "https"):
        return "http"
    if scheme == "tcp":
        return "tcp"
    return "command"


def problem(spec: str) -> str | None:
    """What is wrong with a `health` value, or None (checked when the configuration loads)."""
    if not spec.strip():
        return "expected a command, an http(s):// URL or tcp://host:port, got an empty string"
    k = kind(spec)
    if k == "http":
        parts = urllib.parse.urlsplit(spec)
        if not parts.hostname:
            return f"expected an http(s) URL with a host, got {spec!r}"
    elif k == "tcp":
        try:
            _host_port(spec)
        except ValueError as e:
            return str(e)
    return None


def _host_port(spec: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValueError(f"expected tcp://host:port, got {spec!r}")
    return parts.hostname, port


def probe(spec: str, timeout: float, cwd: Path | None = None) -> Probe:
    """Probe once; never raises for the service's faults, never takes much longer than ``timeout``."""
    start = time.monotonic()
    k = kind(spec)
    if k == "http":
        result = _bounded(lambda: _http(spec, timeout), timeout, f"GET {spec}")
    elif k == "tcp":
        result = _bounded(lambda: _tcp(spec, timeout), timeout, f"connect {spec}")  # name lookup included
    else:
        result = _command(spec, timeout, cwd)
    return Probe(result.ok, result.detail, result.output, round(time.monotonic() - start, 3))


def _http(url: str, timeout: float) -> Probe:
    import urllib.error  # here, not at the top: every run imports this module, few probe over HTTP
    import urllib.request

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers={"User-Agent": "pimainteno-health"})
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(OUTPUT_LIMIT)
            status = response.status
    except urllib.error.HTTPError as e:  # 4xx/5xx (and 3xx, which _NoRedirect leaves to us)
        status = e.code
        try:
            body = e.read(OUTPUT_LIMIT)
        except OSError:
            body = b""
        if 300 <= status < 400:
            return Probe(True, f"GET {url}: {status} (a redirect: the service answers)")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        return Probe(False, f"GET {url}: {reason}")
    text = body.decode("utf-8", "replace")
    if 200 <= status < 400:
        return Probe(True, f"GET {url}: {status}", text)
    return Probe(False, f"GET {url}: {status}", text)


def _tcp(spec: str, timeout: float) -> Probe:
    host, port = _host_port(spec)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Probe(True, f"connected to {host}:{port}")
    except OSError as e:
        return Probe(False, f"cannot connect to {host}:{port}: {e.strerror or e}")


def _command(command: str, timeout: float, cwd: Path | None) -> Probe:
    from pimainteno.procs import run_command

    result = run_command(command, cwd or Path("/"), timeout)
    output = result.output[-OUTPUT_LIMIT:]
    if result.ok:
        return Probe(True, f"`{command}` exited 0", output)
    if result.timed_out:
        return Probe(False, f"`{command}` timed out after {timeout:g}s", output)
    if result.error:
        return Probe(False, f"`{command}`: {result.error}", output)
    return Probe(False, f"`{command}` exited {result.exit_status}", output)


def _bounded(fn: object, timeout: float, what: str) -> Probe:
    """Run a blocking probe in a thread and give up at the deadline (socket timeouts are per read)."""
    box: list[Probe] = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)  # type: ignore[operator]
    thread.start()
    thread.join(timeout + 0.5)
    if box:
        return box[0]
    return Probe(False, f"{what}: no answer within {timeout:g}s")


def wait_healthy(spec: str, *, passes: int, within: float, timeout: float, cwd: Path | None = None,
                 interval: float = 1.0) -> Probe:  # fmt: skip
    """Probe until ``passes`` consecutive passes, or give up after ``within`` seconds.

    Returns the last probe; its ``ok`` says whether the streak was reached in time.
    """
    deadline = time.monotonic() + within
    streak = 0
    last = Probe(False, "not probed")
    while True:
        last = probe(spec, timeout, cwd)
        streak = streak + 1 if last.ok else 0
        if streak >= passes:
            return Probe(True, f"{last.detail} ({passes} in a row)", last.output, last.seconds)
        if time.monotonic() + interval > deadline:
            if last.ok:
                return Probe(False, f"only {streak} of {passes} passes within {within:g}s: {last.detail}",
                             last.output, last.seconds)  # fmt: skip
            return last
        time.sleep(interval)


@dataclass
class Streak:
    """Consecutive failures of one project's probe, as `watch` counts them."""

    failures: int = 0
    last: Probe | None = None
    next_at: float = 0.0


class Prober:
    """`watch`'s periodic probing: every ``interval`` s per project; ``failures`` in a row is a failure."""

    def __init__(self) -> None:
        self.streaks: dict[str, Streak] = {}

    def due(self, name: str, now: float) -> bool:
        return now >= self.streaks.setdefault(name, Streak()).next_at

    def record(self, name: str, result: Probe, now: float, *, interval: float, failures: int) -> bool:
        """Count one probe; True exactly when this probe makes ``failures`` in a row (then it starts over)."""
        streak = self.streaks.setdefault(name, Streak())
        streak.next_at = now + interval
        streak.last = result
        if result.ok:
            streak.failures = 0
            return False
        streak.failures += 1
        if streak.failures >= failures:
            streak.failures = 0
            return True
        return False
