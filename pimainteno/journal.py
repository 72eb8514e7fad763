"""Journal excerpts of a unit (``journalctl -o json``; pystemd has no journal reader): the last
lines of a unit, or the lines of one run of it (its invocation id), cut to a size."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from typing import Any

from pimainteno.errors import ToolError


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def journal_excerpt(
    unit: str, *, invocation_id: str | None = None, lines: int = 80, max_bytes: int = 8000, user: bool = False
) -> str:
    """The unit's last ``lines`` journal messages in at most ``max_bytes`` bytes (newest kept); with
    ``invocation_id`` only that run's: its output and systemd's lines about it. journald may store
    a dying process's last output a few milliseconds after systemd reports the failure."""
    if not invocation_id:
        return _tail([_format_entry(e) for e in _journal(unit, user, lines)], max_bytes)
    entries = _journal(unit, user, max(4 * lines, 400))
    runs = [e.get("_SYSTEMD_INVOCATION_ID") or e.get("INVOCATION_ID") or e.get("USER_INVOCATION_ID") for e in entries]
    mine = [i for i, run in enumerate(runs) if run == invocation_id]
    if not mine:  # an older run: ask the journal for it (without the unattributed lines then)
        strict = (f"_SYSTEMD_INVOCATION_ID={invocation_id}", "+", f"INVOCATION_ID={invocation_id}")
        return _tail([_format_entry(e) for e in _journal(unit, user, lines, *strict)], max_bytes)
    # With the entries next to them that have no invocation id: journald reads it from the cgroup,
    # gone when a process exits at once (7% of such runs here), or they are about the run (coredump).
    lo, hi = mine[0], mine[-1]
    while lo > 0 and not runs[lo - 1]:
        lo -= 1
    while hi + 1 < len(runs) and not runs[hi + 1]:
        hi += 1
    picked = [e for i, e in enumerate(entries) if lo <= i <= hi and runs[i] in (None, invocation_id)]
    return _tail([_format_entry(e) for e in picked[-lines:]], max_bytes)


def _journal(unit: str, user: bool, lines: int, *matches: str) -> list[dict[str, Any]]:
    scope = ["--user"] if user else []
    argv = ["journalctl", *scope, "-u", unit, "-n", str(lines), "-o", "json", "--all", "--no-pager", *matches]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ToolError("journalctl is not installed") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"journalctl -u {unit} did not answer within 60s") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"]
        raise ToolError(f"journalctl -u {unit} failed: {why[-1]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _format_entry(entry: dict[str, Any]) -> str:
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # not UTF-8: journalctl gives the bytes as numbers
        message = bytes(message).decode(errors="replace")
    usec = str(entry.get("__REALTIME_TIMESTAMP", ""))
    when = dt.datetime.fromtimestamp(int(usec) / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ ") if usec.isdigit() else ""
    who = _text(entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "?")
    pid = f"[{entry['_PID']}]" if entry.get("_PID") else ""
    return f"{when}{who}{pid}: {_text(message).rstrip()}"


def _tail(lines: list[str], max_bytes: int) -> str:
    text = "\n".join(lines).encode()
    if len(text) <= max_bytes:
        return text.decode()
    tail = text[len(text) - max_bytes + 40 :]  # 40: room for the marker
    tail = tail[tail.index(b"\n") + 1 :] if b"\n" in tail else tail  # from the start of a line
    cut = text[: len(text) - len(tail)].count(b"\n")
    return f"[{cut} earlier lines cut]\n" + tail.decode(errors="ignore")
