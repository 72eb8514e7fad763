"""`watch` on a real systemd (tests/sandbox.py) with its state directory, database included, on a
tiny tmpfs that fills up (issue 18): it stays alive, keeps the failure, and records it once space is
back. The tmpfs is mounted in the sandbox's own mount namespace, so only the sandbox sees it; the
database is read from inside too."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.sandbox import REPO, SystemdSandbox
from tests.soak.test_faults import FILL
from tests.systemd.project import PY, make_project, wait_for
from tests.systemd.test_heal_scenarios import WATCHED, active, fail_flaky, root

pytestmark = pytest.mark.systemd
__all__ = ["root"]  # the fixture, shared with the other heal scenarios


def test_watch_survives_a_full_disk_and_records_the_failure_once_space_is_back(
    systemd_sandbox: SystemdSandbox, root: Any
) -> None:
    config = make_project(root, extra=WATCHED)
    state = root / "state"
    state.mkdir(exist_ok=True)
    systemd_sandbox.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(state)])

    def query(sql: str) -> list[Any]:
        db = str(state / "pimainteno.db")
        read = f"import json, sqlite3; print(json.dumps(sqlite3.connect({db!r}).execute({sql!r}).fetchall()))"
        found = systemd_sandbox.python(read, check=False)
        return json.loads(found.stdout) if found.returncode == 0 else []

    def journal() -> str:
        return systemd_sandbox.run(["journalctl", "-u", "pm-watch-full.service", "-o", "cat"]).stdout

    try:
        systemd_sandbox.write_unit("pm-flaky.service", "[Service]\nExecStart=/bin/sh -c 'echo flaky; exit 3'\n")
        systemd_sandbox.run(["systemd-run", "--unit=pm-watch-full", f"--working-directory={REPO}",
                             PY, "-m", "pimainteno", "--config", str(config), "watch"])  # fmt: skip
        wait_for("the watch", lambda: query("SELECT value FROM status WHERE key = 'systemd.status'") == [["listening"]],
                 every=0.3)  # fmt: skip
        systemd_sandbox.python(["-c", FILL, str(state / "filler")], check=False)  # ends with ENOSPC
        assert systemd_sandbox.run(["df", "--output=avail", str(state)]).stdout.split()[-1] == "0"

        fail_flaky(systemd_sandbox)
        wait_for("the watch noticing the full disk", lambda: "cannot record failures now" in journal(), every=0.3)
        assert query("SELECT count(*) FROM failures") == [[0]]
        assert active(systemd_sandbox, "pm-watch-full.service") == "active"

        systemd_sandbox.run(["rm", str(state / "filler")])
        wait_for("the kept failure recorded", lambda: query("SELECT unit FROM failures"), timeout=60, every=0.3)
        assert query("SELECT unit, result, exit_status FROM failures") == [["pm-flaky.service", "exit-code", 3]]
        # the row is committed before the line reaches the journal (journald takes a moment, more when loaded)
        wait_for("the watch saying so", lambda: "the database takes failures again" in journal(), every=0.3)
        assert active(systemd_sandbox, "pm-watch-full.service") == "active"
    finally:
        systemd_sandbox.systemctl("stop", "pm-watch-full.service", check=False)
        systemd_sandbox.run(["umount", "--lazy", str(state)], check=False)
