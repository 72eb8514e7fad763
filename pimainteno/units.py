"""pimainteno's systemd units, rendered from pimainteno/templates/systemd/* (a library: no click).

One escaping rule for every value that goes into a unit: a control character (a newline would
start a new directive) is refused with the key it came from; then each value is written for the
syntax of the place it lands — `%` doubled everywhere (systemd's specifiers), and in ExecStart=
`$` doubled and the argument double-quoted with `\\` and `"` escaped when it is not plain; in
quoted settings (Environment=, ReadWritePaths=) `\\` and `"` escaped; in path settings
(DirectoryNotEmpty=) only `%`. Each unit records the configuration it was rendered from in a
`# pimainteno-config:` line, so `install-systemd` can refuse to replace another configuration's units.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import sys
import tomllib
from importlib import resources
from pathlib import Path

from pimainteno.app import App
from pimainteno.errors import InputError, ToolError
from pimainteno.failures import monitored_units
from pimainteno.fleet import file_root

UNITS = (
    "pimainteno-run@.service",
    "pimainteno-run@.timer",
    "pimainteno-drain.path",
    "pimainteno-drain.service",
    "pimainteno-watch.service",
    "pimainteno-heal@.service",
    "pimainteno-dashboard.service",
)
WORKERS = ("pimainteno-run@.service", "pimainteno-drain.service")  # git, tests, codex, restarts
DROP_IN = "pimainteno-heal.conf"  # <unit>.d/pimainteno-heal.conf, from the template on-failure.conf
MARKER = "pimainteno-generated"
CONFIG_LINE = "# pimainteno-config: "
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READ_ONLY = ("/usr", "/boot", "/efi", "/etc")  # what ProtectSystem=full makes read-only
PRIVATE_TMP = ("/tmp", "/var/tmp")  # what PrivateTmp=yes hides
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]+\.(service|socket|device|mount|automount|swap|target|path|timer|scope)")
_PLAIN_ARG = re.compile(r"[A-Za-z0-9_+=:,./@%-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")

# Every system service: no new privileges, /usr, /boot and /etc read-only, no devices, no kernel,
# clock or hostname changes, native system calls only, no debugging, modules, reboot or swap calls.
COMMON_HARDENING = """\
NoNewPrivileges=yes
{private_tmp}PrivateDevices=yes
PrivateMounts=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallErrorNumber=EPERM
"""
# run and drain run git (pushing over the network), the project's tests in bubblewrap, codex (its
# own sandbox: namespaces, seccomp, a JIT in node) and restart units over D-Bus: see docs/systemd.md.
WORKER_HARDENING = """\
# Hardening that still lets git write the projects as their owners left them, push, run the tests in
# bubblewrap and codex in its sandbox, and restart units over D-Bus (docs/systemd.md says why each stays).
{common}ProtectSystem=full
SystemCallFilter=~@clock @cpu-emulation @debug @module @obsolete @raw-io @reboot @swap
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
CapabilityBoundingSet=CAP_SYS_ADMIN CAP_NET_ADMIN CAP_SETFCAP CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER
"""
# watch, heal and the dashboard only read systemd and the journal and write pimainteno's own files.
LIGHT_HARDENING = """\
# Hardening for a service that reads systemd and the journal and writes only pimainteno's own files.
{common}ProtectSystem=strict
ProtectHome=read-only
RestrictNamespaces=yes
MemoryDenyWriteExecute=yes
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
RestrictAddressFamilies=AF_UNIX{inet}
CapabilityBoundingSet=CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER{bind}
"""
USER_HARDENING = """\
# A user manager cannot set up most sandboxing without user namespaces; keep what needs none.
NoNewPrivileges=yes
"""


def checked(key: str, value: str) -> str:
    """``value`` unless it holds a control character, which could end the line it is rendered into."""
    if found := _CONTROL.search(value):
        raise InputError(
            f"{key} = {value!r} holds a control character ({found.group()!r}) that cannot go into a systemd "
            "unit: rename it or choose another path"
        )
    return value


def exec_arg(value: str, key: str = "ExecStart") -> str:
    """One ExecStart= argument: specifiers (%) and variables ($) escaped, quoted when needed."""
    value = checked(key, value).replace("%", "%%")
    if _PLAIN_ARG.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def quoted(value: str, key: str) -> str:
    """A quoted setting value (Environment=, ReadWritePaths=): C escapes and specifiers, no $ expansion."""
    return '"' + checked(key, value).replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'


def plain(value: str, key: str) -> str:
    """A setting taken as it is but for specifiers (paths in DirectoryNotEmpty=, OnCalendar=)."""
    return checked(key, value).replace("%", "%%")


def heal_instance(unit: str) -> str:
    """The OnFailure= instance for ``unit``: `%N` (app.service → pimainteno-heal@app.service, and
    `heal app` adds the .service back) unless the name has no room for that (a dotted stem, not a service)."""
    stem, _, kind = unit.rpartition(".")
    return "%N" if kind == "service" and "." not in stem else "%n"


def template(name: str) -> str:
    return resources.files("pimainteno").joinpath(f"templates/systemd/{name}").read_text(encoding="utf-8")


def _under(path: Path, roots: tuple[str, ...]) -> bool:
    return any(path == Path(r) or Path(r) in path.parents for r in roots)


def _local_remote(project_path: Path, remote: str) -> Path | None:
    """The path of a remote that is a directory on this machine (pushing writes there too)."""
    from pimainteno import git

    with contextlib.suppress(ToolError):
        url = git.git(project_path, "remote", "get-url", remote).strip()
        if url.startswith("file://"):
            return Path(url[len("file://") :])
        if url.startswith("/"):
            return Path(url)
        if "://" not in url and ":" not in url.split("/")[0]:
            return (project_path / url).resolve()
    return None


def _own_paths(app: App) -> list[tuple[str, Path]]:
    cfg = app.config
    own = [("[state] dir", cfg.state_dir), ("database", app.database_path.parent), ("[queue] dir", cfg.queue_dir)]
    return [(key, Path(os.path.abspath(p))) for key, p in own]


def written_paths(app: App) -> list[tuple[str, Path]]:
    """(key, path) of everything the units write: state, database, queue, the projects and their local remotes."""
    paths = _own_paths(app)
    for p in app.config.projects:
        paths.append((f"[[project]] {p.name} path", Path(os.path.abspath(p.path))))
        if (remote := _local_remote(p.path, p.remote)) is not None:
            paths.append((f"[[project]] {p.name} remote", Path(os.path.abspath(remote))))
    return paths


def own_dirs(app: App) -> list[Path]:
    """pimainteno's own directories (state, database, queue): they must exist before a unit starts,
    or ProtectSystem=strict keeps them read-only (ReadWritePaths=- skips what is missing)."""
    return list(dict.fromkeys(p for _, p in _own_paths(app)))


def web_configured(app: App) -> bool:
    """Whether the configuration file has a [web] table (the dashboard service is then enabled)."""
    path = app.config.path
    if path is None:
        return False
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
        return "web" in tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return False


def _hardening(app: App, user: bool) -> dict[str, str]:
    if user:
        return {"WORKER_HARDENING": USER_HARDENING, "LIGHT_HARDENING": USER_HARDENING}
    written = written_paths(app)
    for key, path in written:
        checked(key, str(path))
    in_tmp = [p for _, p in written if _under(p, PRIVATE_TMP)]
    private_tmp = f"# No PrivateTmp=: it would hide {in_tmp[0]}.\n" if in_tmp else "PrivateTmp=yes\n"
    common = COMMON_HARDENING.format(private_tmp=private_tmp)
    worker = WORKER_HARDENING.format(common=common)
    # "-": a place that does not exist yet must not stop the unit from starting
    worker += "".join(f"ReadWritePaths=-{quoted(str(p), k)}\n" for k, p in written if _under(p, READ_ONLY))
    web = app.config.web
    light = LIGHT_HARDENING.format(
        common=common, inet=" AF_INET AF_INET6", bind=" CAP_NET_BIND_SERVICE" if web.port < 1024 else ""
    )
    light += "".join(f"ReadWritePaths=-{quoted(str(p), 'pimainteno state')}\n" for p in own_dirs(app))
    return {"WORKER_HARDENING": worker, "LIGHT_HARDENING": light}


def values(app: App, *, user: bool) -> dict[str, str]:
    """Every @TOKEN@ of the templates, escaped for where it lands."""
    cfg = app.config
    if cfg.path is None:
        raise InputError("install-systemd needs a configuration file (--config) for the units to use")
    if not sys.executable:
        raise ToolError("cannot tell which Python interpreter runs pimainteno (sys.executable is empty)")
    python = os.path.abspath(sys.executable)  # the virtualenv's, not what its symlink points to
    config_path = checked("the configuration path", str(Path(cfg.path).resolve()))
    argv = [(python, "the Python interpreter"), (config_path, "--config")]
    args = [exec_arg(python, "the Python interpreter"), "-m", "pimainteno", "--config", exec_arg(*argv[1])]
    if app.db_path:
        args += ["--db", exec_arg(str(app.database_path.resolve()), "--db")]
    state_dir = str(Path(cfg.state_dir).resolve())
    env = {
        "PIMAINTENO_STATE_DIR": (state_dir, "[state] dir"),
        "PATH": (f"{Path(python).parent}:{DEFAULT_PATH}", "PATH"),
    }
    return {
        "CONFIG": config_path,
        "PIMAINTENO": " ".join(args),
        "ENVIRONMENT": "".join(f"Environment={quoted(f'{k}={v}', key)}\n" for k, (v, key) in env.items()),
        **_hardening(app, user),
        "IDENTITY": "" if user else f"User={checked('User', pwd.getpwuid(os.geteuid()).pw_name)}\n",
        "NETWORK": "" if user else "Wants=network-online.target\nAfter=network-online.target\n",
        "WANTED_BY": "default.target" if user else "multi-user.target",
        "SCHEDULE": plain(cfg.scheduler.schedule, "[scheduler] schedule"),
        "QUEUE_DIR": plain(str(Path(os.path.abspath(cfg.queue_dir))), "[queue] dir"),
        "HEAL_INSTANCE": "%n",
    }


def render(name: str, vals: dict[str, str]) -> str:
    generated = (
        f"Generated by `pimainteno install-systemd` ({MARKER}) from pimainteno/templates/systemd/{name}:"
        f"\n# re-run it after changing the configuration; override with `systemctl edit`, not here."
        f"\n{CONFIG_LINE}{vals['CONFIG']}"
    )
    text = template(name).replace("# @GENERATED@", "# " + generated)
    # A token alone on its line is a block of lines (nothing, when empty); others are inline values.
    text = re.sub(r"^@([A-Z_]+)@\n", lambda m: vals[m.group(1)].rstrip("\n") + "\n" * bool(vals[m.group(1)]), text,
                  flags=re.M)  # fmt: skip
    text = re.sub(r"@([A-Z_]+)@", lambda m: vals[m.group(1)], text)
    return text.rstrip("\n") + "\n"


def rendered_config(text: str) -> str | None:
    """The configuration path a generated unit was rendered from (None: not pimainteno's, or older)."""
    for line in text.splitlines():
        if line.startswith(CONFIG_LINE):
            return line[len(CONFIG_LINE) :]
    return None


def rendered(app: App, *, user: bool) -> dict[str, str]:
    """Relative path in the unit directory → text: the units and a drop-in per monitored unit."""
    vals = values(app, user=user)
    files = {name: render(name, vals) for name in UNITS}
    if app.config.monitor.enabled:
        for unit in monitored_units(app.config):
            if not _UNIT_NAME.fullmatch(unit) or unit.startswith("pimainteno-"):
                raise InputError(f"[systemd_monitor] cannot monitor {unit!r}: not a unit name pimainteno may change")
            files[f"{unit}.d/{DROP_IN}"] = render("on-failure.conf", {**vals, "HEAL_INSTANCE": heal_instance(unit)})
    if app.config.replicate is not None:  # a host in a fleet (docs/fleet.md)
        files[REPLICATE_UNIT] = replicate_unit(app, vals, user=user)
    return files


REPLICATE_UNIT = "pimainteno-replicate.service"
_WRITES = "reads the database and writes only pimainteno's own files and the file:// replica"


def replicate_unit(app: App, vals: dict[str, str], *, user: bool) -> str:
    """`pimainteno-replicate.service` for this host's `[replicate]`, rendered like every other unit.

    `vals` are values(): the ExecStart prefix, the environment, the user, the targets. Added
    here: the hardening (the light services' set, writable only the state directory, the database's
    directory and a file:// replica), the env_file (credentials never enter the unit) and, for a
    NAS share, RequiresMountsFor= so nothing is written into the bare mount point.
    """
    replicate = app.config.replicate
    if replicate is None:
        raise InputError("no [replicate] table: the replicate unit is only for a host in a fleet")
    root = file_root(replicate)
    writable = {p: "pimainteno state" for p in own_dirs(app)}
    if root is not None:
        writable.setdefault(Path(os.path.abspath(root)), "[replicate] url")
    if user:
        hardening = USER_HARDENING
    else:
        in_tmp = next((p for p in writable if any(p == Path(t) or Path(t) in p.parents for t in PRIVATE_TMP)), None)
        private_tmp = f"# No PrivateTmp=: it would hide {in_tmp}.\n" if in_tmp else "PrivateTmp=yes\n"
        hardening = LIGHT_HARDENING.format(
            common=COMMON_HARDENING.format(private_tmp=private_tmp), inet=" AF_INET AF_INET6", bind=""
        ).replace("reads systemd and the journal and writes only pimainteno's own files", _WRITES)
        hardening += "".join(f"ReadWritePaths=-{quoted(str(p), key)}\n" for p, key in writable.items())
    env_file = replicate.env_file
    environment = vals["ENVIRONMENT"]
    if env_file is not None:
        environment += f"EnvironmentFile={quoted(str(env_file), '[replicate] env_file')}\n"
    mounts = f"RequiresMountsFor={quoted(str(root), '[replicate] url')}\n" if root is not None else ""
    return render(REPLICATE_UNIT, {**vals, "ENVIRONMENT": environment, "HARDENING": hardening, "MOUNTS": mounts})
