"""The shipped unit files: one set of templates, rendered with real paths, installed idempotently,
and accepted by `systemd-analyze verify` without a word on stderr (in the systemd sandbox)."""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pimainteno.commands.install_systemd import DROP_IN, UNITS, exec_arg
from tests.conftest import run_cli, write_config
from tests.sandbox import REPO, SystemdSandbox
from tests.systemd.project import make_project, pm, workdir

PACKAGED = REPO / "pimainteno" / "templates" / "systemd"
MONITOR = '[systemd_monitor]\nenabled = true\nunits = ["pm-extra.service"]\n\n[scheduler]\nschedule = "0 3 * * *"\n'


@pytest.fixture
def root() -> Iterator[Path]:
    with workdir("units") as path:
        yield path


def test_systemd_dir_holds_exactly_the_packaged_templates() -> None:
    shipped = {p.name: p.read_bytes() for p in (REPO / "systemd").iterdir()}
    packaged = {p.name: p.read_bytes() for p in PACKAGED.iterdir()}
    assert set(packaged) == {*UNITS, "on-failure.conf", "pimainteno-replicate.service"}  # the last: fleet_units.py
    assert shipped == packaged, "systemd/ drifted: cp pimainteno/templates/systemd/* systemd/"


def test_templates_are_package_data() -> None:
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pimainteno"]
    for name in (*UNITS, "on-failure.conf"):
        assert any(fnmatch.fnmatch(f"templates/systemd/{name}", g) for g in globs), name


@pytest.mark.parametrize(
    ("arg", "rendered"),
    [
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("/srv/my app/PiMainteno.toml", '"/srv/my app/PiMainteno.toml"'),
        ("/srv/100%/x", "/srv/100%%/x"),
        ('/a "b" $HOME\\c', '"/a \\"b\\" $$HOME\\\\c"'),
    ],
)
def test_exec_arg_escapes_specifiers_variables_and_quotes(arg: str, rendered: str) -> None:
    assert exec_arg(arg) == rendered


def _units(result_stdout: str) -> list[tuple[str, str]]:
    return [tuple(line.split(None, 1)) for line in result_stdout.splitlines()]  # type: ignore[misc]


def test_install_renders_this_interpreter_and_is_idempotent(tmp_path: Path) -> None:
    repo = tmp_path / "app"
    repo.mkdir()
    config = write_config(tmp_path, f'{MONITOR}\n[[project]]\nname = "app"\npath = "{repo}"\nunit = "app.service"\n')
    staging = tmp_path / "units"
    first = run_cli("install-systemd", "--unit-dir", str(staging))
    assert first.returncode == 0, first.stderr
    names = [*UNITS, f"pm-extra.service.d/{DROP_IN}", f"app.service.d/{DROP_IN}"]
    assert _units(first.stdout) == [("wrote", str(staging / n)) for n in names]
    assert "re-run with --enable" in first.stderr
    run_unit = (staging / "pimainteno-run@.service").read_text()
    assert f"ExecStart={sys.executable} -m pimainteno --config {config} run --trigger timer %i\n" in run_unit
    assert f'Environment="PIMAINTENO_STATE_DIR={tmp_path / "state"}"\n' in run_unit
    assert "User=root\n" in run_unit and "ProtectSystem=full\n" in run_unit
    # the state and the project live in /tmp: a private /tmp would hide them from the units
    assert f"# No PrivateTmp=: it would hide {tmp_path / 'state'}.\n" in run_unit and "PrivateTmp=yes" not in run_unit
    assert "OnCalendar=*-*-* 03:00:00\n" in (staging / "pimainteno-run@.timer").read_text()
    assert f"DirectoryNotEmpty={tmp_path / 'state' / 'queue'}\n" in (staging / "pimainteno-drain.path").read_text()
    drop_in = (staging / "app.service.d" / DROP_IN).read_text()
    assert drop_in.endswith("[Unit]\nOnFailure=pimainteno-heal@%n.service\n")
    assert not any(re.search(r"@[A-Z_]+@", p.read_text()) for p in staging.rglob("*") if p.is_file())

    stamps = {p: p.stat().st_mtime_ns for p in staging.rglob("*") if p.is_file()}
    again = run_cli("install-systemd", "--unit-dir", str(staging), "--json")
    assert again.returncode == 0, again.stderr
    assert {a["what"] for a in json.loads(again.stdout)} == {"unchanged"}
    assert {p: p.stat().st_mtime_ns for p in staging.rglob("*") if p.is_file()} == stamps

    # No longer monitored: our drop-ins go; someone else's file of the same name stays.
    (staging / "other.service.d").mkdir()
    (staging / "other.service.d" / DROP_IN).write_text("[Unit]\nDescription=mine\n")
    write_config(tmp_path, f'[[project]]\nname = "app"\npath = "{repo}"\n')
    third = run_cli("install-systemd", "--unit-dir", str(staging))
    assert third.returncode == 0, third.stderr
    removed = sorted(path for what, path in _units(third.stdout) if what == "removed")
    assert removed == [str(staging / "app.service.d" / DROP_IN), str(staging / "pm-extra.service.d" / DROP_IN)]
    assert not (staging / "app.service.d").exists()
    assert (staging / "other.service.d" / DROP_IN).read_text() == "[Unit]\nDescription=mine\n"


def test_hardening_keeps_private_tmp_and_opens_read_only_places_it_must_write(root: Path) -> None:
    config = make_project(root, extra='[database]\npath = "/etc/pimainteno-test-never-created/pm.db"\n')
    staging = root / "units"
    result = run_cli("--config", str(config), "install-systemd", "--unit-dir", str(staging))
    assert result.returncode == 0, result.stderr
    text = (staging / "pimainteno-drain.service").read_text()
    assert "\nPrivateTmp=yes\n" in text
    assert '\nReadWritePaths=-"/etc/pimainteno-test-never-created"\n' in text
    assert not Path("/etc/pimainteno-test-never-created").exists()


def test_user_units_have_no_system_dependencies(tmp_path: Path) -> None:
    write_config(tmp_path, f'[[project]]\nname = "app"\npath = "{tmp_path}"\n')
    staging = tmp_path / "user-units"
    result = run_cli("install-systemd", "--user", "--unit-dir", str(staging))
    assert result.returncode == 0, result.stderr
    for name in UNITS:
        text = (staging / name).read_text()
        assert "User=" not in text and "network-online" not in text and "ProtectSystem" not in text, name
    assert "WantedBy=default.target\n" in (staging / "pimainteno-watch.service").read_text()


def _verify(sandbox: SystemdSandbox, paths: list[Path], *, user: bool = False) -> None:
    env = ["env", "XDG_RUNTIME_DIR=/run/user/0"] if user else []
    for path in paths:
        result = sandbox.run([*env, "systemd-analyze", *(["--user"] if user else []), "verify", str(path)], check=False)
        assert (result.returncode, result.stderr) == (0, ""), f"{path.name}: {result.stderr or result.stdout}"


@pytest.mark.systemd
def test_every_unit_passes_systemd_analyze_verify(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, extra='[systemd_monitor]\nenabled = true\nunits = ["pm-extra.service"]\n')
    system, user = root / "system", root / "user"
    assert pm(systemd_sandbox, config, "install-systemd", "--unit-dir", str(system)).returncode == 0
    assert pm(systemd_sandbox, config, "install-systemd", "--user", "--unit-dir", str(user)).returncode == 0
    # Templates are verified as instances; demo-app.service is verified with its OnFailure= drop-in.
    (system / "demo-app.service").write_text("[Service]\nExecStart=/bin/sleep infinity\n")
    instances = ["pimainteno-run@app.service", "pimainteno-run@app.timer", "pimainteno-drain.path",
                 "pimainteno-drain.service", "pimainteno-watch.service", "pimainteno-heal@demo-app.service.service"]  # fmt: skip
    _verify(systemd_sandbox, [system / n for n in [*instances, "demo-app.service"]])
    systemd_sandbox.run(["mkdir", "-p", "/run/user/0"])
    _verify(systemd_sandbox, [user / n for n in instances], user=True)
    # ...and verify does complain about a broken unit, so the silence above means something
    (system / "pimainteno-drain.service").write_text(
        (system / "pimainteno-drain.service").read_text() + "ProtectSystm=full\n"
    )
    broken = systemd_sandbox.run(["systemd-analyze", "verify", str(system / "pimainteno-drain.service")], check=False)
    assert "Unknown key 'ProtectSystm'" in broken.stderr


@pytest.mark.systemd
def test_paths_with_spaces_and_percent_reach_the_command(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    odd = root / "my config 100%"
    odd.mkdir()
    config = make_project(odd)
    result = pm(systemd_sandbox, config, "install-systemd", "--unit-dir", "/run/systemd/system")
    assert result.returncode == 0, result.stderr
    systemd_sandbox.daemon_reload()
    shown = systemd_sandbox.systemctl("show", "-p", "ExecStart", "pimainteno-drain.service").stdout
    assert f"argv[]={sys.executable} -m pimainteno --config {config} drain ;" in shown
    queue = odd / "state" / "queue"
    queue.mkdir(parents=True)
    systemd_sandbox.systemctl("start", "pimainteno-drain.service")  # a oneshot: returns when it has run
    journal = systemd_sandbox.run(["journalctl", "-u", "pimainteno-drain.service", "-o", "cat"]).stdout
    assert "the queue is empty" in journal
    assert (odd / "state" / "pimainteno.db").exists()
