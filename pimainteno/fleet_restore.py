"""The central side of the fleet: restore each host's replica into a cache, safely, and judge it.

A restore goes to a new file named by its transaction id; it is checked (SQLite quick_check, the
pimainteno tables) and switched to the rollback journal so readers need no side files; only then
is it handed to the web process, which swaps it in. A reader never sees a half-restored file, and
a replica that stops restoring keeps its last good copy on the page, marked broken.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pimainteno import fleet
from pimainteno.config import ReplicateConfig
from pimainteno.errors import PimaintenoError, ToolError

TABLES = {"projects", "runs", "proposals", "status"}
LITESTREAM_TIMEOUT = 60.0  # seconds for one `litestream ltx` or `litestream restore`


def run_litestream(args: list[str], env: Mapping[str, str] | None = None, timeout: float = LITESTREAM_TIMEOUT) -> str:
    """Run litestream with a deadline that kills its process group; its stdout, or a one-line ToolError."""
    from pimainteno.procs import run_command

    argv = [fleet.require_litestream(), *args]
    # stdout and stderr are merged by run_command: only JSON commands parse the output, and they
    # print nothing else on success.
    done = run_command(argv, cwd=Path("/"), timeout=timeout, env=dict(env or {}))
    if done.timed_out:
        raise ToolError(f"litestream {args[0]} timed out after {timeout:.0f}s; is the replica store reachable?")
    if not done.ok:
        last = (done.error or done.output).strip().splitlines()
        raise ToolError(f"litestream {args[0]}: {last[-1] if last else f'exit {done.exit_status}'}")
    return done.output


@dataclass(frozen=True)
class ReplicaInfo:
    files: int
    max_txid: str | None  # hex, as Litestream prints it
    newest: str | None  # UTC ISO-8601 of the newest LTX file


def replica_info(url: str, env: Mapping[str, str] | None = None, timeout: float = LITESTREAM_TIMEOUT) -> ReplicaInfo:
    """What a replica holds, from `litestream ltx -level all -json URL` (no download of the data)."""
    out = run_litestream(["ltx", "-level", "all", "-json", url], env, timeout)
    try:
        start = out.index("[")
        entries = json.loads(out[start : out.rindex("]") + 1])
    except ValueError:
        raise ToolError(f"litestream ltx {url}: unreadable listing: {out.strip()[:200]}") from None
    if not entries:
        return ReplicaInfo(0, None, None)
    txid = max(str(e.get("max_txid", "")) for e in entries)
    newest = max(str(e.get("timestamp", "")) for e in entries)
    return ReplicaInfo(len(entries), txid, newest)


def list_hosts(replicate: ReplicateConfig) -> list[str]:
    """The fleet: `hosts` from the settings, plus every host directory found under a file:// URL."""
    found = set(replicate.hosts)
    root = fleet.file_root(replicate)
    if root is not None:
        if not root.is_dir():  # an unmounted share is not a fleet whose hosts all retired
            raise ToolError(f"replica directory {root} is not there (is the share mounted?)")
        for entry in root.iterdir():
            if (
                fleet.HOST_NAME.fullmatch(entry.name)
                and entry.is_dir()
                and ((entry / "ltx").is_dir() or (entry / fleet.MARKER).exists())
            ):
                found.add(entry.name)
    return sorted(found)


@dataclass(frozen=True)
class HostView:
    """What the fleet knows of one host."""

    name: str
    snapshot: Path | None = None  # the restored copy being served
    txid: str | None = None
    restored_at: str | None = None  # when that copy was restored here
    replica_newest: str | None = None  # the newest LTX file in the replica
    heartbeat: str | None = None  # the host's last `replicate` heartbeat in that copy
    interval: float | None = None  # the host's own [replicate] interval
    web_url: str | None = None
    problem: str | None = None  # why the last refresh failed (None: it worked)
    failed_txid: str | None = None  # the replica state that failed to restore: not retried until it changes
    missing: bool = False  # nothing has ever been replicated under this name


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def age(stamp: str | None, at: datetime | None = None) -> float | None:
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return ((at or datetime.now(UTC)) - when).total_seconds()


def condition(view: HostView, default_interval: float, at: datetime | None = None) -> tuple[str, str]:
    """(state, detail): ok, stale, broken, missing or pending, with the age of the host's data."""
    if view.snapshot is None:
        if view.missing:
            return "missing", view.problem or "no replica under this name yet"
        if view.problem:
            return "broken", view.problem
        return "pending", "not restored yet"
    if view.problem:
        return "broken", f"{view.problem} (showing the copy restored {view.restored_at})"
    data_age = age(view.heartbeat or view.replica_newest, at)
    limit = fleet.stale_after(view.interval or default_interval)
    if data_age is None:
        return "stale", "no heartbeat in its data: is `pimainteno replicate` running there?"
    if data_age > limit:
        return "stale", f"data {data_age:.0f}s old (stale after {limit:.0f}s)"
    return "ok", f"data {data_age:.0f}s old"


def _inspect(path: Path) -> dict[str, tuple[str, str]]:
    """Check a restored file and make it self-contained; its `status` rows (value, updated_at), or ValueError."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=5)
        try:
            conn.execute("PRAGMA journal_mode = DELETE")  # readers open it mode=ro: no -wal/-shm to share
            result = conn.execute("PRAGMA quick_check").fetchone()
            if not result or result[0] != "ok":
                raise ValueError(f"corrupt copy: {result[0] if result else 'quick_check said nothing'}")
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not names >= TABLES:
                raise ValueError(f"not a pimainteno database (no {', '.join(sorted(TABLES - names))} table)")
            return {k: (v, t) for k, v, t in conn.execute("SELECT key, value, updated_at FROM status")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise ValueError(f"corrupt copy: {e}") from None


def refresh(
    replicate: ReplicateConfig, view: HostView, cache_dir: Path, env: Mapping[str, str] | None = None
) -> HostView:
    """Restore one host's replica when it has changed; the new view (never raises for the replica's faults)."""
    url = fleet.replica_url(replicate, view.name)
    try:
        info = replica_info(url, env)
    except PimaintenoError as e:
        return replace(view, problem=f"replica unreadable: {e}")
    if not info.files:
        return replace(view, missing=view.snapshot is None, problem="no replica files (never replicated, or retired)")
    if view.snapshot is not None and info.max_txid == view.txid and view.snapshot.exists():
        return replace(view, replica_newest=info.newest, problem=None)
    if view.problem and info.max_txid == view.failed_txid:
        return view  # the same broken files: trying again would only fail again
    host_dir = cache_dir / view.name
    host_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    new = host_dir / f".{info.max_txid}.restoring.db"
    final = host_dir / f"{info.max_txid}.db"
    _remove(new)
    try:
        run_litestream(["restore", "-o", str(new), url], env)
        status = _inspect(new)
        os.replace(new, final)  # complete and checked: only now does it get its served name
    except (PimaintenoError, ValueError, OSError) as e:
        _remove(new)
        return replace(view, problem=f"restore failed: {e}", failed_txid=info.max_txid, missing=False)
    interval = None
    with contextlib.suppress(TypeError, ValueError):
        interval = float(status.get("replicate.interval", ("", ""))[0])
    return HostView(
        name=view.name,
        snapshot=final,
        txid=info.max_txid,
        restored_at=now(),
        replica_newest=info.newest,
        heartbeat=status.get(fleet.HEARTBEAT_KEY, ("", ""))[1] or None,
        interval=interval,
        web_url=status.get("web.url", ("", ""))[0] or None,
    )


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def discard_old(cache_dir: Path, host: str, keep: Path) -> None:
    """Delete a host's earlier copies (open readers keep their file until they close it)."""
    for path in (cache_dir / host).glob("*.db"):
        if path != keep:
            _remove(path)


def forget(cache_dir: Path, host: str) -> None:
    """Delete a retired host's copies."""
    shutil.rmtree(cache_dir / host, ignore_errors=True)


def reset_cache(cache_dir: Path) -> None:
    """Start from an empty cache: copies from an earlier run may belong to retired hosts."""
    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    cache_dir.mkdir(parents=True, mode=0o700)
