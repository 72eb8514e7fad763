"""`drain --follow` waits out a full disk instead of exiting (issue 18): its database on a tiny tmpfs
in a private mount namespace that the drain itself holds (as root), filled, then freed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pimainteno import queue
from pimainteno.commands.demo import make_sample
from tests.soak.helpers import need
from tests.soak.test_faults import COMMAND_LLM, FILL, write_config

pytestmark = pytest.mark.slow


def wait_for(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.1)
    return value


def test_drain_follow_waits_out_a_full_disk_then_runs_the_trigger(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs in a private mount namespace needs root")
    unshare, nsenter = need("unshare"), need("nsenter")
    repo, _ = make_sample(tmp_path)
    state, queue_dir = tmp_path / "state", tmp_path / "queue"  # the queue on the host's disk, the database full
    state.mkdir()
    write_config(tmp_path, repo, COMMAND_LLM, extra=f'\n[state]\ndir = "{state}"\n\n[queue]\ndir = "{queue_dir}"\n')
    mount = f'mount -t tmpfs -o size=2m,mode=0700 tmpfs "{state}" && exec "$@"'
    drain = subprocess.Popen(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", mount, "sh",
         sys.executable, "-m", "pimainteno", "--config", str(tmp_path / "PiMainteno.toml"), "drain", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    db = state / "pimainteno.db"  # seen only inside the drain's namespace (SQLite resolves /proc/PID/root)

    def inside(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([nsenter, "-t", str(drain.pid), "-m", *argv], capture_output=True, text=True, timeout=60)

    def query(sql: str) -> list[Any]:
        read = f"import json, sqlite3; print(json.dumps(sqlite3.connect({str(db)!r}).execute({sql!r}).fetchall()))"
        found = inside(sys.executable, "-c", read)
        return json.loads(found.stdout) if found.returncode == 0 else []

    try:
        wait_for("the follower's heartbeat", lambda: query("SELECT value FROM status WHERE key = 'drain.status'")
                 or drain.poll() is not None, timeout=20)  # fmt: skip
        assert drain.poll() is None, drain.communicate()
        inside(sys.executable, "-c", FILL, str(state / "filler"))
        assert inside("df", "--output=avail", str(state)).stdout.split()[-1] == "0"
        queue.enqueue(queue_dir, "app", reason="while the disk is full")
        time.sleep(6)  # a few passes: each fails to record, waits (1 s, 2 s, ...) and tries again
        assert drain.poll() is None, drain.communicate()
        assert query("SELECT count(*) FROM triggers") == [[0]]  # nothing recorded, nothing consumed
        assert list(queue_dir.glob("**/*.json")), "the trigger was dropped while the disk was full"

        assert inside("rm", str(state / "filler")).returncode == 0
        wait_for("the trigger run once space is back", lambda: query("SELECT status FROM triggers"))
        assert query("SELECT status FROM triggers") == [["done"]], query("SELECT * FROM triggers")
        assert query("SELECT status FROM runs") == [["ok"]]
        assert drain.poll() is None
    finally:
        if drain.poll() is None:
            os.killpg(drain.pid, signal.SIGTERM)
        _, stderr = drain.communicate(timeout=30)
        print(stderr)  # the follower's log, shown when the test fails
    assert "cannot be written (database or disk is full); retrying in 2s" in stderr, stderr  # it did wait
