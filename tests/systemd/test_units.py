"""The shipped unit files: one set of templates, rendered with real paths (hostile ones too), installed
idempotently, accepted by `systemd-analyze verify` without a word on stderr (in the systemd sandbox),
and rated at most 4.9 by `systemd-analyze security`."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pimainteno.app import App
from pimainteno.errors import InputError
from pimainteno.units import DROP_IN, UNITS, exec_arg, heal_instance, rendered
from tests.conftest import run_cli, write_config
from tests.sandbox import REPO, SystemdSandbox
from tests.systemd.project import make_project, pm, query, wait_for, workdir

PACKAGED = REPO / "pimainteno" / "templates" / "systemd"
MONITOR = '[systemd_monitor]\nenabled = true\nunits = ["pm-extra.service"]\n\n[scheduler]\nschedule = "0 3 * * *"\n'
SERVICES = [n for n in UNITS if n.endswith(".service")]
# Every character the escaping must get right, in a directory name (no control characters: refused).
HOSTILE = 'it\'s "odd" $(touch pwned) $PM_NOT_SET 100%i \\back\\slash ;'


@pytest.fixture
def root() -> Iterator[Path]:
    with workdir("units") as path:
        yield path


def test_systemd_dir_holds_exactly_the_packaged_templates() -> None:
    shipped = {p.name: p.read_bytes() for p in (REPO / "systemd").iterdir()}
    packaged = {p.name: p.read_bytes() for p in PACKAGED.iterdir()}
    assert set(packaged) == {*UNITS, "on-failure.conf", "pimainteno-replicate.service"}  # last: units.py
    assert shipped == packaged, "systemd/ drifted: cp pimainteno/templates/systemd/* systemd/"


def test_templates_are_package_data() -> None:
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pimainteno"]
    for name in (*UNITS, "on-failure.conf"):
        assert any(fnmatch.fnmatch(f"templates/systemd/{name}", g) for g in globs), name


@pytest.mark.parametrize(
    ("arg", "rendered_arg"),
    [
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("/srv/my app/PiMainteno.toml", '"/srv/my app/PiMainteno.toml"'),
        ("/srv/100%/x", "/srv/100%%/x"),
        ('/a "b" $HOME\\c', '"/a \\"b\\" $$HOME\\\\c"'),
        ("/srv/a;b", '"/srv/a;b"'),
    ],
)
def test_exec_arg_escapes_specifiers_variables_and_quotes(arg: str, rendered_arg: str) -> None:
    assert exec_arg(arg) == rendered_arg


@pytest.mark.parametrize("bad", ["/srv/a\nExecStartPre=/bin/touch /pwned", "/srv/a\r", "/srv/a\x00", "/srv/\x1b[1m"])
def test_exec_arg_refuses_control_characters_naming_the_key(bad: str) -> None:
    with pytest.raises(InputError, match=r"^--config = .* holds a control character"):
        exec_arg(bad, "--config")


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ('[state]\ndir = "/srv/s\\nExecStartPre=/bin/touch /pwned"\n', "state.dir"),  # at load
        ('[queue]\ndir = "/srv/q\\nUnit=evil.service"\n', "queue.dir"),  # at load
        ('[scheduler]\nschedule = "daily\\nExecStartPre=/bin/touch /pwned"\n', "scheduler.schedule"),  # at load
        ('[[project]]\nname = "app"\npath = "/srv/app\\nExecStartPre=/bin/touch /pwned"\n', "project[0].path"),
    ],
)
def test_a_newline_in_any_rendered_value_is_refused_naming_its_key(tmp_path: Path, setting: str, key: str) -> None:
    write_config(tmp_path, setting)
    result = run_cli("install-systemd", "--unit-dir", str(tmp_path / "units"))
    assert result.returncode != 0 and result.stderr.startswith("Error: ")
    assert f"Error: {key} = " in result.stderr or f"PiMainteno.toml: {key}: " in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "units").exists()


@pytest.mark.parametrize(
    ("unit", "instance"),
    [("app.service", "%N"), ("my-app@blue.service", "%N"), ("app.v2.service", "%n"), ("app.socket", "%n")],
)
def test_the_heal_instance_drops_service_only_where_heal_can_add_it_back(unit: str, instance: str) -> None:
    assert heal_instance(unit) == instance  # `heal NAME` adds .service to a NAME without a dot


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
    created = [("created", str(tmp_path / "state")), ("created", str(tmp_path / "state" / "queue"))]
    assert _units(first.stdout) == created + [("wrote", str(staging / n)) for n in names]
    assert "re-run with --enable" in first.stderr
    run_unit = (staging / "pimainteno-run@.service").read_text()
    assert f"ExecStart={sys.executable} -m pimainteno --config {config} run --trigger timer %i\n" in run_unit
    assert f'Environment="PIMAINTENO_STATE_DIR={tmp_path / "state"}"\n' in run_unit
    assert f"\n# pimainteno-config: {config}\n" in run_unit
    assert "User=root\n" in run_unit and "ProtectSystem=full\n" in run_unit
    # the state and the project live in /tmp: a private /tmp would hide them from the units
    assert f"# No PrivateTmp=: it would hide {tmp_path / 'state'}.\n" in run_unit and "PrivateTmp=yes" not in run_unit
    assert "OnCalendar=*-*-* 03:00:00\n" in (staging / "pimainteno-run@.timer").read_text()
    assert f"DirectoryNotEmpty={tmp_path / 'state' / 'queue'}\n" in (staging / "pimainteno-drain.path").read_text()
    drop_in = (staging / "app.service.d" / DROP_IN).read_text()
    assert drop_in.endswith("[Unit]\nOnFailure=pimainteno-heal@%N.service\n")  # app, not app.service.service
    assert "ExecStart=" in (staging / "pimainteno-heal@.service").read_text()
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


def test_units_of_another_configuration_are_replaced_only_with_force(tmp_path: Path) -> None:
    staging = tmp_path / "units"
    mine = write_config(tmp_path, MONITOR)
    other = tmp_path / "other" / "PiMainteno.toml"
    other.parent.mkdir()
    other.write_text('[systemd_monitor]\nenabled = true\nunits = ["theirs.service"]\n')
    assert run_cli("--config", str(other), "install-systemd", "--unit-dir", str(staging)).returncode == 0
    before = {p: p.read_text() for p in staging.rglob("*") if p.is_file()}

    refused = run_cli("install-systemd", "--unit-dir", str(staging))
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr == (
        f"Error: {staging / UNITS[0]} was rendered from another configuration ({other}), not {mine}: "
        "run install-systemd with that one, or pass --force to replace its units\n"
    )
    assert {p: p.read_text() for p in staging.rglob("*") if p.is_file()} == before

    # a unit rendered before units named their configuration is replaced as before
    older = tmp_path / "older" / "pimainteno-drain.path"
    older.parent.mkdir()
    text = (staging / older.name).read_text()
    older.write_text("".join(line for line in text.splitlines(True) if "pimainteno-config:" not in line))
    assert run_cli("install-systemd", "--unit-dir", str(older.parent)).returncode == 0
    assert f"# pimainteno-config: {mine}\n" in older.read_text()

    forced = run_cli("install-systemd", "--unit-dir", str(staging), "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"# pimainteno-config: {mine}\n" in (staging / "pimainteno-drain.service").read_text()
    # the other configuration's drop-in is not ours to remove: its watch still needs it
    assert f"# pimainteno-config: {other}\n" in (staging / "theirs.service.d" / DROP_IN).read_text()


def test_private_tmp_is_kept_unless_something_written_lives_in_tmp(tmp_path: Path) -> None:
    # Paths that are never created: the rendering does not depend on where this clone sits.
    outside = '[state]\ndir = "/srv/pm-never/state"\n[database]\npath = "/etc/pm-never/pm.db"\n'
    write_config(tmp_path, outside + '[[project]]\nname = "app"\npath = "/srv/pm-never/app"\n')
    files = rendered(App(), user=False)
    for name in SERVICES:
        assert "\nPrivateTmp=yes\n" in files[name], name
    assert '\nReadWritePaths=-"/etc/pm-never"\n' in files["pimainteno-drain.service"]
    assert '\nReadWritePaths=-"/srv/pm-never/state"\n' in files["pimainteno-watch.service"]
    assert not Path("/etc/pm-never").exists() and not Path("/srv/pm-never").exists()

    write_config(tmp_path, outside + '[[project]]\nname = "app"\npath = "/var/tmp/pm-never/app"\n')
    files = rendered(App(), user=False)
    for name in SERVICES:
        assert "\n# No PrivateTmp=: it would hide /var/tmp/pm-never/app.\n" in files[name], name
        assert "PrivateTmp=yes" not in files[name], name


def test_user_units_have_no_system_dependencies(tmp_path: Path) -> None:
    write_config(tmp_path, f'[[project]]\nname = "app"\npath = "{tmp_path}"\n')
    staging = tmp_path / "user-units"
    result = run_cli("install-systemd", "--user", "--unit-dir", str(staging))
    assert result.returncode == 0, result.stderr
    for name in UNITS:
        text = (staging / name).read_text()
        assert "User=" not in text and "network-online" not in text and "ProtectSystem" not in text, name
    assert "WantedBy=default.target\n" in (staging / "pimainteno-watch.service").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_every_service_rates_at_most_4_9_in_systemd_analyze_security(tmp_path: Path) -> None:
    write_config(tmp_path, f'{MONITOR}[web]\nport = 80\n[[project]]\nname = "app"\npath = "/srv/pm-never/app"\n')
    staging = tmp_path / "units"
    staging.mkdir()
    for name, text in rendered(App(), user=False).items():
        if name in SERVICES:
            (staging / name).write_text(text)
    for name in SERVICES:
        argv = ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(staging / name)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
        assert score, f"{name}: {result.stdout[-500:]}{result.stderr}"
        assert float(score.group(1)) <= 4.9, f"{name} rates {score.group(1)}"


def _verify(sandbox: SystemdSandbox, paths: list[Path], *, user: bool = False) -> None:
    env = ["env", "XDG_RUNTIME_DIR=/run/user/0"] if user else []
    for path in paths:
        result = sandbox.run([*env, "systemd-analyze", *(["--user"] if user else []), "verify", str(path)], check=False)
        assert (result.returncode, result.stderr) == (0, ""), f"{path.name}: {result.stderr or result.stdout}"


INSTANCES = ["pimainteno-run@app.service", "pimainteno-run@app.timer", "pimainteno-drain.path",
             "pimainteno-drain.service", "pimainteno-watch.service", "pimainteno-heal@demo-app.service",
             "pimainteno-dashboard.service"]  # fmt: skip


@pytest.mark.systemd
def test_every_unit_passes_systemd_analyze_verify(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, extra='[systemd_monitor]\nenabled = true\nunits = ["pm-extra.service"]\n')
    system, user = root / "system", root / "user"
    assert pm(systemd_sandbox, config, "install-systemd", "--unit-dir", str(system)).returncode == 0
    assert pm(systemd_sandbox, config, "install-systemd", "--user", "--unit-dir", str(user)).returncode == 0
    # Templates are verified as instances; demo-app.service is verified with its OnFailure= drop-in.
    (system / "demo-app.service").write_text("[Service]\nExecStart=/bin/sleep infinity\n")
    _verify(systemd_sandbox, [system / n for n in [*INSTANCES, "demo-app.service"]])
    systemd_sandbox.run(["mkdir", "-p", "/run/user/0"])
    _verify(systemd_sandbox, [user / n for n in INSTANCES], user=True)
    # ...and verify does complain about a broken unit, so the silence above means something
    (system / "pimainteno-drain.service").write_text(
        (system / "pimainteno-drain.service").read_text() + "ProtectSystm=full\n"
    )
    broken = systemd_sandbox.run(["systemd-analyze", "verify", str(system / "pimainteno-drain.service")], check=False)
    assert "Unknown key 'ProtectSystm'" in broken.stderr


def _keys(text: str) -> set[str]:
    return {line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith(("#", "["))}


@pytest.mark.systemd
def test_hostile_paths_render_verify_and_reach_systemd_unchanged(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    odd = root / HOSTILE
    (odd / "state" / "queue").mkdir(parents=True)
    config = make_project(odd, extra='[systemd_monitor]\nenabled = true\nunits = ["pm-extra.service"]\n')
    plain_root = root / "plain"
    plain_root.mkdir()
    benign = make_project(plain_root, extra='[systemd_monitor]\nenabled = true\nunits = ["pm-extra.service"]\n')
    staging, reference = root / "staging", root / "reference"
    assert pm(systemd_sandbox, config, "install-systemd", "--unit-dir", str(staging)).returncode == 0
    assert pm(systemd_sandbox, benign, "install-systemd", "--unit-dir", str(reference)).returncode == 0
    for path in staging.rglob("*"):  # no directive appears that the plain paths do not render
        if path.is_file():
            assert _keys(path.read_text()) == _keys((reference / path.relative_to(staging)).read_text()), path.name
    (staging / "demo-app.service").write_text("[Service]\nExecStart=/bin/sleep infinity\n")
    _verify(systemd_sandbox, [staging / n for n in [*INSTANCES, "demo-app.service"]])

    result = pm(systemd_sandbox, config, "install-systemd", "--unit-dir", "/run/systemd/system")
    assert result.returncode == 0, result.stderr
    systemd_sandbox.write_unit("pm-extra.service", "[Service]\nExecStart=/bin/true\n")  # reloads
    show = systemd_sandbox.systemctl("show", "-p", "ExecStart", "-p", "Environment", "-p", "ReadWritePaths",
                                     "pimainteno-drain.service").stdout  # fmt: skip
    assert f"PYTHONPATH={REPO}" in show  # the services run this checkout (tests/conftest_systemd.py)
    shown = str(config).replace("$", "$$")  # as systemd keeps it: $$ becomes $ when the command runs
    assert f"argv[]={sys.executable} -m pimainteno --config {shown} drain ;" in show
    on_failure = systemd_sandbox.systemctl("show", "-p", "OnFailure", "pm-extra.service").stdout
    assert on_failure == "OnFailure=pimainteno-heal@pm-extra.service\n"  # not pm-extra.service.service
    paths = systemd_sandbox.systemctl("show", "-p", "Paths", "pimainteno-drain.path").stdout
    assert paths.strip() == f"Paths={odd / 'state' / 'queue'} (DirectoryNotEmpty)"
    # What the processes got: the configuration, the state directory (Environment=) and, for the
    # watch under ProtectSystem=strict, a writable state directory (ReadWritePaths=).
    systemd_sandbox.systemctl("start", "pimainteno-drain.service")  # a oneshot: returns when it has run
    journal = systemd_sandbox.run(["journalctl", "-u", "pimainteno-drain.service", "-o", "cat"]).stdout
    assert "the queue is empty" in journal
    assert (odd / "state" / "pimainteno.db").exists()
    systemd_sandbox.systemctl("start", "pimainteno-watch.service")
    try:
        listening = "SELECT 1 FROM status WHERE key = 'systemd.status' AND value = 'listening'"
        wait_for("the watch", lambda: query(odd, listening))
    finally:
        systemd_sandbox.systemctl("stop", "pimainteno-watch.service")
    assert not list(root.rglob("pwned")) and not (REPO / "pwned").exists()
    for name in ("pimainteno-drain.path", "pimainteno-drain.service", "pimainteno-watch.service"):
        (systemd_sandbox.path("/run/systemd/system") / name).unlink()
    systemd_sandbox.daemon_reload()


CODEX = REPO / ".tools" / "node_modules" / ".bin" / "codex"


def _service_settings(text: str) -> list[str]:
    """The hardening lines of a rendered unit's [Service] section, as `systemd-run -p` arguments."""
    service = text.split("[Service]\n", 1)[1].split("\n[", 1)[0]
    keep = ("ExecStart=", "Type=", "User=", "SuccessExitStatus=", "Environment=")
    return [a for line in service.splitlines() if line and not line.startswith(("#", *keep)) for a in ("-p", line)]


@pytest.mark.systemd
@pytest.mark.skipif(shutil.which("bwrap") is None or not CODEX.exists(), reason="needs bubblewrap and .tools/codex")
def test_the_worker_hardening_still_runs_bubblewrap_and_codexs_sandbox(
    systemd_sandbox: SystemdSandbox, root: Path
) -> None:
    """What run and drain start inside their unit: the project's tests in bubblewrap (as root: it
    mounts with CAP_SYS_ADMIN, brings up a private loopback with CAP_NET_ADMIN) and codex's own
    sandbox (a user namespace mapping root needs CAP_SETFCAP). Each capability was found by removal."""
    config = make_project(root)
    staging = root / "staging"
    assert pm(systemd_sandbox, config, "install-systemd", "--unit-dir", str(staging)).returncode == 0
    settings = _service_settings((staging / "pimainteno-drain.service").read_text())
    assert (
        "CapabilityBoundingSet=CAP_SYS_ADMIN CAP_NET_ADMIN CAP_SETFCAP CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER"
        in settings
    )
    project = root / "demo-app"
    # Not under the clone (which may sit under /tmp, where codex refuses its helper); writable as the
    # drain's own CODEX_HOME would be (~/.codex, or a ReadWritePaths= of the unit's)
    codex_home = Path(tempfile.mkdtemp(prefix="pimainteno-test-codex-", dir="/var/lib"))
    settings = [*settings, "-p", f"ReadWritePaths={codex_home}"]
    bwrap = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
             "--bind", str(project), str(project), "--chdir", str(project), "--unshare-net", "--die-with-parent",
             "sh", "-c", "git status --short >/dev/null && echo tests-ran > proof && cat proof"]  # fmt: skip
    codex = ["env", f"CODEX_HOME={codex_home}", str(CODEX), "sandbox", "--", "sh", "-c", "echo codex-ran"]
    try:
        for argv, said in ((bwrap, "tests-ran"), (codex, "codex-ran")):
            got = systemd_sandbox.run(["systemd-run", "--wait", "--pipe", "--quiet", *settings, *argv], check=False)
            assert (got.returncode, got.stdout.strip()) == (0, said), got.stderr
    finally:
        shutil.rmtree(codex_home, ignore_errors=True)


FETCH = """
import sys, time, urllib.request
for _ in range(300):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
        break
    except OSError:
        time.sleep(0.1)
"""


@pytest.mark.systemd
def test_enable_starts_the_dashboard_where_web_says_and_stops_it_without_web(
    systemd_sandbox: SystemdSandbox, root: Path
) -> None:
    config = make_project(root, extra='[web]\nhost = "127.0.0.1"\nport = 8765\n')
    try:
        result = pm(systemd_sandbox, config, "install-systemd", "--enable")
        assert result.returncode == 0, result.stderr
        assert "ran       systemctl enable pimainteno-dashboard.service" in result.stdout.splitlines()
        got = systemd_sandbox.python(["-c", FETCH, "http://127.0.0.1:8765/"], timeout=60).stdout.strip()
        journal = systemd_sandbox.run(["journalctl", "-u", "pimainteno-dashboard.service", "-o", "cat"]).stdout
        assert got == "200", journal
        assert systemd_sandbox.systemctl("is-active", "pimainteno-dashboard.service").stdout.strip() == "active"

        config.write_text(config.read_text().replace('[web]\nhost = "127.0.0.1"\nport = 8765\n', ""))
        again = pm(systemd_sandbox, config, "install-systemd", "--enable")
        assert again.returncode == 0, again.stderr
        assert "ran       systemctl disable --now pimainteno-dashboard.service" in again.stdout.splitlines()
        state = systemd_sandbox.systemctl("is-active", "pimainteno-dashboard.service", check=False).stdout.strip()
        assert state == "inactive"
    finally:
        units = ["pimainteno-dashboard.service", "pimainteno-drain.path", "pimainteno-run@app.timer"]
        systemd_sandbox.systemctl("disable", "--now", *units, check=False)
