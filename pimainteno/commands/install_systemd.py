"""`pimainteno install-systemd [--user] [--unit-dir DIR] [--enable]`: render and install the units.

Rendering (and escaping) is pimainteno.units. Writing is idempotent: a file is rewritten only when
its text changes, and `OnFailure=` drop-ins of units no longer monitored are removed. A unit that
another configuration file rendered is not replaced without ``force``.

System mode writes to /etc/systemd/system and runs the units as the installing user (root, so
they can restart system units); `--user` writes to ~/.config/systemd/user for the user manager.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pimainteno import fleet_units, procs, units
from pimainteno.app import App
from pimainteno.errors import InputError, ToolError

log = logging.getLogger("pimainteno")

SYSTEM_DIR = Path("/etc/systemd/system")


@dataclass(frozen=True)
class Action:
    what: str  # created, wrote, unchanged, removed, ran, skipped
    target: str

    def line(self) -> str:
        return f"{self.what:<9} {self.target}"


def unit_dir_for(user: bool) -> Path:
    if not user:
        return SYSTEM_DIR
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "systemd" / "user"


def _write(path: Path, text: str) -> Action:
    if path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
        return Action("unchanged", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return Action("wrote", str(path))


def _foreign(path: Path, config: str) -> str | None:
    """The other configuration file ``path`` was rendered from, if it was not ``config``."""
    if not path.is_file():
        return None
    theirs = units.rendered_config(path.read_text(encoding="utf-8", errors="replace"))
    return theirs if theirs is not None and theirs != config else None


def _stale_drop_ins(unit_dir: Path, keep: set[str], config: str) -> list[Action]:
    actions = []
    for path in sorted(unit_dir.glob(f"*.d/{units.DROP_IN}")):
        rel = f"{path.parent.name}/{path.name}"
        text = path.read_text(encoding="utf-8", errors="replace")
        if rel in keep or units.MARKER not in text or _foreign(path, config):
            continue  # another configuration's drop-in is that configuration's to remove
        path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when we left it empty
        actions.append(Action("removed", str(path)))
    return actions


def _systemctl(user: bool, *args: str) -> Action:
    argv = ["systemctl", *(["--user"] if user else []), *args]
    done = procs.run_command(argv, cwd=Path("/"), timeout=120)  # its own process group, killed at the deadline
    if done.error is not None:
        raise ToolError("systemctl is not installed; is this a systemd machine?")
    if done.timed_out:
        raise ToolError(f"{' '.join(argv)} did not finish within 120s")
    if done.exit_status != 0:
        why = (done.output.strip().splitlines() or [f"exit status {done.exit_status}"])[-1]
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
    if units.web_configured(app):  # restarted: it reads [web] host and port at start
        actions += [_systemctl(user, "enable", "pimainteno-dashboard.service")]
        actions += [_systemctl(user, "restart", "pimainteno-dashboard.service")]
    elif (
        unit_dir_for(user) / f"{'default' if user else 'multi-user'}.target.wants/pimainteno-dashboard.service"
    ).exists():
        actions.append(_systemctl(user, "disable", "--now", "pimainteno-dashboard.service"))
    if cfg.replicate is not None:  # restarted: it reads [replicate] at start
        actions += [_systemctl(user, "enable", fleet_units.UNIT), _systemctl(user, "restart", fleet_units.UNIT)]
    return actions


def _retire_replicate(app: App, target: Path, config: str, user: bool, enable: bool) -> list[Action]:
    """No [replicate] any more: our replicate unit goes (stopped and disabled first, with --enable)."""
    path = target / fleet_units.UNIT
    if app.config.replicate is not None or not path.is_file():
        return []
    if units.MARKER not in path.read_text(encoding="utf-8", errors="replace") or _foreign(path, config):
        return []  # not ours, or another configuration's
    actions = []
    wants = unit_dir_for(user) / f"{'default' if user else 'multi-user'}.target.wants" / fleet_units.UNIT
    if wants.is_symlink() or wants.exists():
        if not enable:
            log.warning("%s is enabled but [replicate] is gone: re-run with --enable to stop and remove it", path)
            return []
        actions.append(_systemctl(user, "disable", "--now", fleet_units.UNIT))
    path.unlink()
    return [*actions, Action("removed", str(path))]


def systemd_missing(user: bool) -> str | None:
    """Why no systemd manager can take the units here (sd_booted's test), or None."""
    if not user:
        return None if Path("/run/systemd/system").is_dir() else "systemd is not running on this machine"
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}")
    return None if (runtime / "systemd").is_dir() else f"no systemd user manager for this user ({runtime}/systemd)"


def install_systemd(
    app: App, *, user: bool = False, unit_dir: Path | None = None, enable: bool = False, force: bool = False
) -> list[Action]:
    """Render, write (only what changed), drop stale drop-ins; reload, and with ``enable`` enable and start.
    Units rendered from another configuration file are replaced only with ``force``."""
    if user and app.config.monitor.enabled and not app.config.monitor.user:
        log.warning("user units, but [systemd_monitor] user = false: watch and restart will use the system manager")
    if enable and (why := systemd_missing(user)):  # before writing anything: nothing half-installed
        raise ToolError(f"{why}: nothing written; run install-systemd without --enable (or with --unit-dir DIR) "
                        "to only render the units")  # fmt: skip
    files = units.rendered(app, user=user)
    target = unit_dir or unit_dir_for(user)
    config = units.rendered_config(next(iter(files.values()))) or ""
    if not force:
        for rel in files:
            if (theirs := _foreign(target / rel, config)) is not None:
                raise InputError(
                    f"{target / rel} was rendered from another configuration ({theirs}), not {config}: "
                    "run install-systemd with that one, or pass --force to replace its units"
                )
    actions = [Action("created", str(d)) for d in units.own_dirs(app) if not d.is_dir()]
    for action in actions:  # before the units start: ProtectSystem=strict would leave them read-only
        Path(action.target).mkdir(mode=0o700, parents=True, exist_ok=True)
    actions += [_write(target / rel, text) for rel, text in files.items()]
    actions += _stale_drop_ins(target, set(files), config)
    actions += _retire_replicate(app, target, config, user, enable)
    if enable:
        actions.append(_systemctl(user, "daemon-reload"))
        actions += _enable(app, user)
    elif unit_dir is None:
        try:
            actions.append(_systemctl(user, "daemon-reload"))
        except ToolError as e:
            log.warning("%s; reload systemd yourself before enabling the units", e)
    return actions
