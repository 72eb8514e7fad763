"""`pimainteno install-systemd [--user] [--unit-dir DIR] [--enable]`: render and install the units.

The templates are pimainteno/templates/systemd/* (copied verbatim to systemd/ at the top of the
repository for readers; a test keeps the two identical). Rendering puts in this interpreter, the
absolute configuration path, the state directory, the queue directory and the schedule, so the
units run exactly the pimainteno that installed them. Writing is idempotent: a file is rewritten
only when its text changes, and `OnFailure=` drop-ins of units no longer monitored are removed.

System mode writes to /etc/systemd/system and runs the units as the installing user (root, so
they can restart system units); `--user` writes to ~/.config/systemd/user for the user manager.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pimainteno.app import App
from pimainteno.errors import InputError, ToolError
from pimainteno.failures import monitored_units

log = logging.getLogger("pimainteno")

UNITS = (
    "pimainteno-run@.service",
    "pimainteno-run@.timer",
    "pimainteno-drain.path",
    "pimainteno-drain.service",
    "pimainteno-watch.service",
    "pimainteno-heal@.service",
)
DROP_IN = "pimainteno-heal.conf"  # <unit>.d/pimainteno-heal.conf, from the template on-failure.conf
MARKER = "pimainteno-generated"
SYSTEM_DIR = Path("/etc/systemd/system")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READ_ONLY = ("/usr", "/boot", "/efi", "/etc")  # what ProtectSystem=full makes read-only
PRIVATE_TMP = ("/tmp", "/var/tmp")  # what PrivateTmp=yes hides
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|device|mount|automount|swap|target|path|timer|scope)$")
_PLAIN_ARG = re.compile(r"^[A-Za-z0-9_+=:,./@%-]+$")

SYSTEM_HARDENING = """\
# Hardening that still lets git write the projects and use the remotes' credentials: /usr, /boot
# and /etc are read-only, /home, /root, /srv, /opt and /var stay writable (repositories, ~/.ssh,
# ~/.git-credentials, ~/.codex); no new privileges, no devices, no kernel or clock changes.
NoNewPrivileges=yes
ProtectSystem=full
{private_tmp}PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
"""
USER_HARDENING = """\
# A user manager cannot set up most sandboxing without user namespaces; keep what needs none.
NoNewPrivileges=yes
"""


@dataclass(frozen=True)
class Action:
    what: str  # wrote, unchanged, removed, ran, skipped
    target: str

    def line(self) -> str:
        return f"{self.what:<9} {self.target}"


def exec_arg(arg: str) -> str:
    """One ExecStart= argument: specifiers (%) and variables ($) escaped, quoted when needed."""
    arg = arg.replace("%", "%%")
    if _PLAIN_ARG.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def _quoted(value: str) -> str:  # a quoted setting value (Environment=, ReadWritePaths=): no $ expansion there
    return '"' + value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'


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


def written_paths(app: App) -> list[Path]:
    """Everything the units write: state, database, queue, the projects and their local remotes."""
    cfg = app.config
    paths = [cfg.state_dir, app.database_path.parent, cfg.queue_dir]
    for p in cfg.projects:
        paths.append(p.path)
        if (remote := _local_remote(p.path, p.remote)) is not None:
            paths.append(remote)
    return [Path(os.path.abspath(p)) for p in paths]


def values(app: App, *, user: bool) -> dict[str, str]:
    cfg = app.config
    if cfg.path is None:
        raise InputError("install-systemd needs a configuration file (--config) for the units to use")
    if not sys.executable:
        raise ToolError("cannot tell which Python interpreter runs pimainteno (sys.executable is empty)")
    python = os.path.abspath(sys.executable)  # the virtualenv's, not what its symlink points to
    argv = [python, "-m", "pimainteno", "--config", str(Path(cfg.path).resolve())]
    if app.db_path:
        argv += ["--db", str(app.database_path.resolve())]
    env = {"PIMAINTENO_STATE_DIR": str(Path(cfg.state_dir).resolve()), "PATH": f"{Path(python).parent}:{DEFAULT_PATH}"}
    hardening = USER_HARDENING
    if not user:
        written = written_paths(app)
        in_tmp = [p for p in written if _under(p, PRIVATE_TMP)]
        private_tmp = f"# No PrivateTmp=: it would hide {in_tmp[0]}.\n" if in_tmp else "PrivateTmp=yes\n"
        hardening = SYSTEM_HARDENING.format(private_tmp=private_tmp)
        # "-": a place that does not exist yet must not stop the unit from starting
        hardening += "".join(f"ReadWritePaths=-{_quoted(str(p))}\n" for p in written if _under(p, READ_ONLY))
    return {
        "PIMAINTENO": " ".join(exec_arg(a) for a in argv),
        "ENVIRONMENT": "".join(f"Environment={_quoted(f'{k}={v}')}\n" for k, v in env.items()),
        "HARDENING": hardening,
        "IDENTITY": "" if user else f"User={pwd.getpwuid(os.geteuid()).pw_name}\n",
        "NETWORK": "" if user else "Wants=network-online.target\nAfter=network-online.target\n",
        "WANTED_BY": "default.target" if user else "multi-user.target",
        "SCHEDULE": cfg.scheduler.schedule.replace("%", "%%"),
        "QUEUE_DIR": str(Path(os.path.abspath(cfg.queue_dir))).replace("%", "%%"),
    }


def render(name: str, vals: dict[str, str]) -> str:
    generated = (
        f"Generated by `pimainteno install-systemd` ({MARKER}) from pimainteno/templates/systemd/{name}:"
        "\n# re-run it after changing the configuration; override with `systemctl edit`, not here."
    )
    text = template(name).replace("@GENERATED@", generated)
    # A token alone on its line is a block of lines (nothing, when empty); others are inline values.
    text = re.sub(r"^@([A-Z_]+)@\n", lambda m: vals[m.group(1)].rstrip("\n") + "\n" * bool(vals[m.group(1)]), text,
                  flags=re.M)  # fmt: skip
    text = re.sub(r"@([A-Z_]+)@", lambda m: vals[m.group(1)], text)
    return text.rstrip("\n") + "\n"


def unit_dir_for(user: bool) -> Path:
    if not user:
        return SYSTEM_DIR
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "systemd" / "user"


def rendered(app: App, *, user: bool) -> dict[str, str]:
    """Relative path in the unit directory → text: the units and a drop-in per monitored unit."""
    vals = values(app, user=user)
    files = {name: render(name, vals) for name in UNITS}
    if app.config.monitor.enabled:
        for unit in monitored_units(app.config):
            if not _UNIT_NAME.match(unit) or unit.startswith("pimainteno-"):
                raise InputError(f"[systemd_monitor] cannot monitor {unit!r}: not a unit name pimainteno may change")
            files[f"{unit}.d/{DROP_IN}"] = render("on-failure.conf", vals)
    return files


def _write(path: Path, text: str) -> Action:
    if path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
        return Action("unchanged", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return Action("wrote", str(path))


def _stale_drop_ins(unit_dir: Path, keep: set[str]) -> list[Action]:
    actions = []
    for path in sorted(unit_dir.glob(f"*.d/{DROP_IN}")):
        rel = f"{path.parent.name}/{path.name}"
        if rel in keep or MARKER not in path.read_text(encoding="utf-8", errors="replace"):
            continue
        path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when we left it empty
        actions.append(Action("removed", str(path)))
    return actions


def _systemctl(user: bool, *args: str) -> Action:
    argv = ["systemctl", *(["--user"] if user else []), *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ToolError("systemctl is not installed; is this a systemd machine?") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{' '.join(argv)} did not finish within 120s") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ToolError(f"{' '.join(argv)} failed: {why}")
    return Action("ran", " ".join(argv))


def _enable(app: App, user: bool) -> list[Action]:
    cfg = app.config
    actions = [_systemctl(user, "enable", "--now", "pimainteno-drain.path")]
    wanted = {f"pimainteno-run@{p.name}.timer" for p in cfg.projects} if cfg.scheduler.enabled else set()
    wants = unit_dir_for(user) / "timers.target.wants"
    stale = sorted(p.name for p in wants.glob("pimainteno-run@*.timer") if p.name not in wanted)
    if stale:
        actions.append(_systemctl(user, "disable", "--now", *stale))
    if wanted:
        actions.append(_systemctl(user, "enable", "--now", *sorted(wanted)))
    if cfg.monitor.enabled:  # restarted: it reads the units to watch from the configuration at start
        actions += [_systemctl(user, "enable", "pimainteno-watch.service")]
        actions += [_systemctl(user, "restart", "pimainteno-watch.service")]
    elif (unit_dir_for(user) / f"{'default' if user else 'multi-user'}.target.wants/pimainteno-watch.service").exists():
        actions.append(_systemctl(user, "disable", "--now", "pimainteno-watch.service"))
    return actions


def install_systemd(
    app: App, *, user: bool = False, unit_dir: Path | None = None, enable: bool = False
) -> list[Action]:
    """Render, write (only what changed), drop stale drop-ins; reload, and with ``enable`` enable and start."""
    if user and app.config.monitor.enabled and not app.config.monitor.user:
        log.warning("user units, but [systemd_monitor] user = false: watch and restart will use the system manager")
    files = rendered(app, user=user)
    target = unit_dir or unit_dir_for(user)
    actions = [_write(target / rel, text) for rel, text in files.items()]
    actions += _stale_drop_ins(target, set(files))
    if enable:
        actions.append(_systemctl(user, "daemon-reload"))
        actions += _enable(app, user)
    elif unit_dir is None:
        try:
            actions.append(_systemctl(user, "daemon-reload"))
        except ToolError as e:
            log.warning("%s; reload systemd yourself before enabling the units", e)
    return actions
