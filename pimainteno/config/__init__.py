"""Load PiMainteno.toml (or .json) into typed, frozen objects.

The schema (every key, type, default and meaning) is declared once in `schema.py`; `check.py`
builds it from the file and `resolve` derives the rest (a project's name and unit from its path,
`~`/`$VAR` expansion, the database inside the seed's cache directory). Every other module reads
these objects, never raw dicts. Errors name the file and the key and say what was expected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pimainteno.config.schema import (
    MODES,
    File,
    GitConfig,
    LLMConfig,
    MonitorConfig,
    NotifyConfig,
    PatchPolicy,
    Project,
    ReplicateConfig,
    Sandbox,
    SchedulerConfig,
    WebConfig,
)
from pimainteno.errors import ConfigError

__all__ = [
    "MODES",
    "CONFIG_NAME", "Config", "GitConfig", "LLMConfig", "MonitorConfig", "NotifyConfig", "PatchPolicy",
    "Project", "ReplicateConfig", "Sandbox", "SchedulerConfig", "WebConfig", "check_project_path", "default_state_dir",
    "find_config", "from_dict", "load", "name_from_path", "normalise_schedule", "resolve", "search_path",
]  # fmt: skip

CONFIG_NAME = "PiMainteno.toml"
DB_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def search_path() -> list[Path]:
    """Where the config is looked for when neither --config nor PIMAINTENO_CONFIG is given."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        Path.cwd() / CONFIG_NAME,
        Path(xdg) / "pimainteno" / CONFIG_NAME,
        Path("/etc/pimainteno") / CONFIG_NAME,
    ]


def default_state_dir() -> Path:
    from pimainteno.config.check import control_character

    for var in ("PIMAINTENO_STATE_DIR", "XDG_STATE_HOME"):
        bad = control_character(os.environ.get(var, ""))
        if bad:
            raise ConfigError(f"environment variable {var}: control character {bad} is not allowed; remove it")
    env = os.environ.get("PIMAINTENO_STATE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "pimainteno"


@dataclass(frozen=True)
class Config:
    """The resolved configuration: paths absolute, names and units filled in, aliases folded."""

    path: Path | None
    llm: LLMConfig
    projects: tuple[Project, ...]
    database: Path
    state_dir: Path
    queue_dir: Path
    scheduler: SchedulerConfig
    monitor: MonitorConfig
    web: WebConfig
    git: GitConfig
    notify: NotifyConfig
    policy: PatchPolicy
    replicate: ReplicateConfig | None = None  # None: no [replicate] table, this host is not in a fleet

    def project(self, name: str) -> Project:
        for p in self.projects:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.projects) or "none configured"
        raise ConfigError(f"unknown project {name!r} (known: {known})")

    def project_for_unit(self, unit: str) -> Project | None:
        return next((p for p in self.projects if p.unit == unit), None)

    def provider_for(self, project: Project) -> str:
        return project.provider or self.llm.provider

    def monitored_units(self) -> list[str]:
        """`[systemd_monitor] units`, plus each project's unit when monitoring is enabled."""
        units = list(self.monitor.units)
        if self.monitor.enabled:
            units += [p.unit for p in self.projects]
        return list(dict.fromkeys(units))


def find_config(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("PIMAINTENO_CONFIG")
    if env:
        return Path(env).expanduser()
    for candidate in search_path():
        if candidate.exists():
            return candidate
    places = ", ".join(str(p) for p in search_path())
    raise ConfigError(f"no configuration found (looked in {places}); run `pimainteno init` to write one")


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Find, read and validate the configuration."""
    file = find_config(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file; run `pimainteno init` to write one") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory, not a configuration file") from None
    except OSError as e:
        raise ConfigError(f"{file}: cannot read it ({e.strerror})") from None
    is_json = file.suffix.lower() == ".json"
    try:
        text = raw.decode("utf-8")
        if is_json:
            import json

            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    except ValueError as e:  # tomllib.TOMLDecodeError and json.JSONDecodeError
        detail = f"{e.msg} at line {e.lineno} column {e.colno}" if is_json else str(e)  # type: ignore[attr-defined]
        raise ConfigError(f"{file}: invalid {'JSON' if is_json else 'TOML'}: {detail}") from None
    except RecursionError:
        raise ConfigError(f"{file}: nested too deeply to be a configuration") from None
    return from_dict(data, file)


def from_dict(data: Any, file: Path | None = None) -> Config:
    """Check data against the schema, then resolve it."""
    from pimainteno.config import check

    name = str(file) if file else "<config>"
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: top level: expected a table, got {check.kind(data)}")
    check.refuse_control_characters(name, data)
    projects = data.get("project", data.get("projects"))
    top = {k: v for k, v in data.items() if k not in ("project", "projects")}
    parsed: File = check.build(File, top, "", name)
    # Projects refine [policy]: their missing keys come from it, not from the built-in defaults.
    global_policy = _fold_protected(parsed.policy)
    if projects is not None:
        key = "project" if "project" in data else "projects"
        if "project" in data and "projects" in data:
            raise ConfigError(f"{name}: projects: give `project` or `projects`, not both")
        if not isinstance(projects, list):
            raise ConfigError(f"{name}: {key}: expected [[project]] tables, got {check.kind(projects)}")
        tables = []
        for i, t in enumerate(projects):
            where = f"project[{i}]"
            if not isinstance(t, dict):
                raise ConfigError(f"{name}: {where}: expected a table, got {check.kind(t)}")
            project = check.build(Project, t, where, name, {PatchPolicy: global_policy})
            tables.append(replace(project, policy=_fold_protected(project.policy)))
        parsed = replace(parsed, project=tuple(tables))
    return resolve(replace(parsed, policy=global_policy), file)


def _fold_protected(policy: PatchPolicy) -> PatchPolicy:
    if not policy.extra_protected:
        return policy
    return replace(policy, protected=policy.protected + policy.extra_protected, extra_protected=())


def _path(value: Path, base: Path) -> Path:
    p = Path(os.path.expandvars(str(value))).expanduser()
    return p if p.is_absolute() else (base / p)


def name_from_path(path: Path) -> str:
    """A project name derived from its directory: unusual characters become '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.name).strip("-._")[:64] or "project"


def resolve(parsed: File, file: Path | None = None) -> Config:
    """The derived values, in one step: absolute paths, project names and units, the seed's aliases."""
    name = str(file) if file else "<config>"
    base = file.parent.resolve() if file else Path.cwd()
    state_dir = _path(parsed.state.dir, base) if parsed.state.dir else default_state_dir()
    database = _database(_path(parsed.database.path, base)) if parsed.database.path else state_dir / "pimainteno.db"
    queue_dir = _path(parsed.queue.dir, base) if parsed.queue.dir else state_dir / "queue"
    from pimainteno.config.schedule import normalise_schedule

    try:
        scheduler = replace(parsed.scheduler, schedule=normalise_schedule(parsed.scheduler.schedule))
    except ValueError as e:
        raise ConfigError(f"{name}: scheduler.schedule: expected {e}, got {parsed.scheduler.schedule!r}") from None
    seed = [Project(path=p, policy=parsed.policy) for p in parsed.scheduler.projects or ()]
    projects = tuple(_resolve_project(p, base) for p in (*seed, *parsed.project))
    seen: set[str] = set()
    for proj in projects:
        if proj.name in seen:
            raise ConfigError(f"{name}: project {proj.name!r} is configured twice; give one a different name")
        seen.add(proj.name)
    if not _loopback(parsed.web.host):
        import logging

        logging.getLogger("pimainteno").warning(
            "%s: web.host %s lets other machines reach the dashboard; put an authenticating proxy in front",
            name, parsed.web.host,
        )  # fmt: skip
    return Config(
        path=file, llm=parsed.llm, projects=projects, database=database, state_dir=state_dir,
        queue_dir=queue_dir, scheduler=scheduler, monitor=parsed.systemd_monitor, web=parsed.web,
        git=parsed.git, notify=parsed.notify, policy=parsed.policy,
        replicate=_resolve_replicate(parsed.replicate, base),
    )  # fmt: skip


def _loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _database(path: Path) -> Path:
    """The seed's `[cache] path` named a directory (a sled cache): the database then lives inside it."""
    if path.is_dir() or path.suffix.lower() not in DB_SUFFIXES:
        return path / "pimainteno.db"
    return path


def _resolve_replicate(r: ReplicateConfig | None, base: Path) -> ReplicateConfig | None:
    return replace(r, env_file=_path(r.env_file, base)) if r is not None and r.env_file else r


def _resolve_project(p: Project, base: Path) -> Project:
    path = _path(p.path, base)
    unit = p.unit or f"{path.name}.service"  # the seed's rule, kept as it was
    if "." not in unit:
        unit += ".service"
    sandbox = replace(p.sandbox, writable=tuple(_path(w, base) for w in p.sandbox.writable))
    return replace(p, path=path, name=p.name or name_from_path(path), unit=unit, sandbox=sandbox)


def normalise_schedule(value: str) -> str:
    """A cron expression (`0 3 * * *`) or an OnCalendar expression, as OnCalendar."""
    from pimainteno.config import schedule

    return schedule.normalise_schedule(value)


def check_project_path(project: Project) -> str | None:
    """Why this project's path cannot be used, or None. Reported per project, not at load time."""
    if not project.path.exists():
        return f"project {project.name!r}: path {project.path} does not exist"
    if not project.path.is_dir():
        return f"project {project.name!r}: path {project.path} is not a directory"
    if not (project.path / ".git").exists():
        return f"project {project.name!r}: {project.path} is not a git repository (no .git)"
    return None
