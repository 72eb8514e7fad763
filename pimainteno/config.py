"""Load and validate PiMainteno.toml (or .json) into typed, frozen objects.

Every other module reads these objects, never raw dicts. Errors name the file, the key and what
was expected, in one line.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pimainteno.errors import ConfigError

CONFIG_NAME = "PiMainteno.toml"
MODES = ("propose", "apply", "commit", "push")
PROVIDERS = ("codex", "command", "llm")
PROPOSE_WHEN = ("signal", "always")


def search_path() -> list[Path]:
    """Where the config is looked for when neither --config nor PIMAINTENO_CONFIG is given."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        Path.cwd() / CONFIG_NAME,
        Path(xdg) / "pimainteno" / CONFIG_NAME,
        Path("/etc/pimainteno") / CONFIG_NAME,
    ]


def default_state_dir() -> Path:
    env = os.environ.get("PIMAINTENO_STATE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "pimainteno"


@dataclass(frozen=True)
class LLMConfig:
    provider: str = "codex"
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = "OPENAI_API_KEY"
    codex: str = "codex"  # the codex executable (name on PATH or a path)
    extra_args: tuple[str, ...] = ()  # raw codex CLI arguments (the seed's "extra flags")
    options: dict[str, Any] = field(default_factory=dict)  # codex `-c key=value` overrides
    command: str | tuple[str, ...] | None = None  # the `command` provider's fixer
    timeout: float = 600.0


@dataclass(frozen=True)
class PatchPolicy:
    max_files: int = 20
    max_lines: int = 1000
    protected: tuple[str, ...] = (
        ".git/**",
        ".github/workflows/**",
        ".gitlab-ci.yml",
        ".gitmodules",
        ".gitattributes",
        ".env",
        ".env.*",
        "**/*.pem",
        "**/*.key",
        "**/id_rsa*",
        "PiMainteno.toml",
    )
    allow_new_files: bool = True
    allow_delete: bool = True
    allow_exec: bool = False  # may a patch set the executable bit
    allow_binary: bool = False


@dataclass(frozen=True)
class Project:
    name: str
    path: Path
    unit: str
    restart: bool = True  # restart `unit` after a push (and roll back when it is unhealthy)
    remote: str = "origin"
    branch: str | None = None  # None: the branch checked out
    push_branch: str | None = None  # push here for review instead of `branch`
    test: str | tuple[str, ...] | None = None  # trusted shell string or argument list
    test_timeout: float = 900.0
    mode: str = "push"
    propose_when: str = "signal"
    retries: int = 1
    summary_file: str = "codex.md"
    provider: str | None = None  # overrides [llm].provider for this project
    command: str | tuple[str, ...] | None = None  # overrides [llm].command
    policy: PatchPolicy = field(default_factory=PatchPolicy)


@dataclass(frozen=True)
class SchedulerConfig:
    enabled: bool = True
    schedule: str = "daily"  # normalised to a systemd OnCalendar expression


@dataclass(frozen=True)
class MonitorConfig:
    enabled: bool = False
    units: tuple[str, ...] = ()
    user: bool = False  # the user bus instead of the system bus
    settle: float = 10.0  # seconds a restarted unit must stay active to count as healthy
    restart_timeout: float = 90.0
    heal_limit: int = 3  # heals per unit per window
    heal_window: float = 3600.0
    journal_lines: int = 80


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8001
    token: str | None = field(default=None, repr=False)  # Bearer token for scripts
    allow: Any = None  # a Datasette allow block for the pimainteno-run permission


@dataclass(frozen=True)
class GitConfig:
    author: str = ""  # "Name <email>"; empty: pimainteno <pimainteno@HOSTNAME>
    timeout: float = 120.0

    @property
    def author_or_default(self) -> str:
        return self.author or f"pimainteno <pimainteno@{socket.gethostname()}>"


@dataclass(frozen=True)
class Config:
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


# --- validation helpers ------------------------------------------------------------------


class _Reader:
    """Reads one table, tracking which keys were used so leftovers are reported."""

    def __init__(self, file: str, where: str, data: Any):
        self.file, self.where = file, where
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {where or 'top level'}: expected a table, got {_kind(data)}")
        self.data = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key(name)}: expected {expected}, got {_show(value)}")

    def get(self, name: str, *aliases: str) -> Any:
        for n in (name, *aliases):
            if n in self.data:
                self.seen.add(n)
                return self.data[n]
        return None

    def text(self, name: str, default: Any = None, *aliases: str, choices: tuple[str, ...] = ()) -> Any:
        v = self.get(name, *aliases)
        if v is None:
            return default
        if not isinstance(v, str):
            raise self.fail(name, "a string", v)
        if choices and v not in choices:
            raise self.fail(name, "one of " + ", ".join(choices), v)
        return v

    def flag(self, name: str, default: bool) -> bool:
        v = self.get(name)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.fail(name, "true or false", v)
        return v

    def number(self, name: str, default: float, *, integer: bool = False, minimum: float = 0) -> Any:
        v = self.get(name)
        if v is None:
            return default
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or v < minimum:
            what = "an integer" if integer else "a number"
            raise self.fail(name, f"{what} >= {minimum:g}", v)
        return v

    def strings(self, name: str, default: tuple[str, ...] = (), *aliases: str) -> tuple[str, ...]:
        v = self.get(name, *aliases)
        if v is None:
            return default
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.fail(name, "a list of strings", v)
        return tuple(v)

    def command(self, name: str) -> str | tuple[str, ...] | None:
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, str) and v.strip():
            return v
        if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            return tuple(v)
        raise self.fail(name, "a command (a shell string or a non-empty list of arguments)", v)

    def table(self, name: str, *aliases: str) -> _Reader:
        return _Reader(self.file, self.key(name), self.get(name, *aliases) or {})

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(
                f"{self.file}: unknown key {self.key(unknown[0])!r}"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                + "; see docs/configuration.md for the keys"
            )


def _kind(v: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _path(value: str, base: Path) -> Path:
    p = Path(os.path.expandvars(value)).expanduser()
    return p if p.is_absolute() else (base / p)


_CRON_FIELD = re.compile(r"^[\d*,/\-]+$")
_SHORTHANDS = {
    "minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually",
    "quarterly", "semiannually",
}  # fmt: skip
_DOW = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_ON_CALENDAR = re.compile(r"^[A-Za-z0-9*,./:~\- +]+$")


def normalise_schedule(value: str) -> str:
    """A cron expression (`0 3 * * *`) or an OnCalendar expression, as OnCalendar."""
    text = " ".join(value.split())
    fields = text.split(" ")
    if len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields):
        return _cron_to_oncalendar(fields)
    if text.startswith("@") and text[1:] in _SHORTHANDS:
        return text[1:]
    if text in _SHORTHANDS or (_ON_CALENDAR.match(text) and any(c.isdigit() or c == "*" for c in text)):
        return text
    raise ValueError("a cron expression such as '0 3 * * *' or a systemd OnCalendar expression")


def _cron_part(part: str, lo: int, hi: int, width: int = 2) -> str:
    out = []
    for item in part.split(","):
        step = ""
        if "/" in item:
            item, step = item.split("/", 1)
            if not step.isdigit() or int(step) == 0:
                raise ValueError("a valid cron step")
        if item == "*":
            out.append(f"{lo:0{width}d}/{step}" if step else "*")
            continue
        bounds = item.split("-")
        if len(bounds) > 2 or not all(b.isdigit() and lo <= int(b) <= hi for b in bounds):
            raise ValueError(f"cron values between {lo} and {hi}")
        text = "..".join(f"{int(b):0{width}d}" for b in bounds)
        out.append(f"{text}/{step}" if step else text)
    return ",".join(out)


def _cron_to_oncalendar(fields: list[str]) -> str:
    minute, hour, dom, month, dow = fields
    date = f"*-{_cron_part(month, 1, 12)}-{_cron_part(dom, 1, 31)}"
    time = f"{_cron_part(hour, 0, 23)}:{_cron_part(minute, 0, 59)}:00"
    if dow == "*":
        return f"{date} {time}"
    days = []
    for item in dow.split(","):
        bounds = item.split("-")
        if "/" in item or len(bounds) > 2 or not all(b.isdigit() and 0 <= int(b) <= 7 for b in bounds):
            raise ValueError("cron weekdays between 0 and 7")
        days.append("..".join(_DOW[int(b)] for b in bounds))
    return f"{','.join(days)} {date} {time}"


# --- loading ----------------------------------------------------------------------------------


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
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if file.suffix.lower() == ".json" else tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: invalid TOML: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{file}: invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise ConfigError(f"{file}: nested too deeply to be a configuration") from None
    return from_dict(data, file)


def from_dict(data: Any, file: Path | None = None) -> Config:
    name = str(file) if file else "<config>"
    base = file.parent.resolve() if file else Path.cwd()
    top = _Reader(name, "", data)

    llm_t = top.table("llm")
    llm = LLMConfig(
        provider=llm_t.text("provider", "codex", choices=PROVIDERS),
        model=llm_t.text("model"),
        api_key=llm_t.text("api_key"),
        api_key_env=llm_t.text("api_key_env", "OPENAI_API_KEY"),
        codex=llm_t.text("codex", "codex"),
        extra_args=llm_t.strings("extra_args", (), "args", "extra_flags"),
        options=_options(llm_t),
        command=llm_t.command("command"),
        timeout=llm_t.number("timeout", 600.0, minimum=1),
    )
    llm_t.done()

    state_t = top.table("state")
    state_dir = _path(state_t.text("dir"), base) if state_t.get("dir") else default_state_dir()
    state_t.done()

    db_t = top.table("database")
    cache_t = top.table("cache")  # the seed's name for the same thing
    db_value = db_t.text("path") or cache_t.text("path")
    db_t.done()
    cache_t.done()
    database = _path(db_value, base) if db_value else state_dir / "pimainteno.db"

    queue_t = top.table("queue")
    queue_dir = _path(queue_t.text("dir"), base) if queue_t.get("dir") else state_dir / "queue"
    queue_t.done()

    sched_t = top.table("scheduler")
    schedule = sched_t.text("schedule", "daily", "cron")
    try:
        schedule = normalise_schedule(schedule)
    except ValueError as e:
        raise sched_t.fail("schedule", str(e), schedule) from None
    scheduler = SchedulerConfig(enabled=sched_t.flag("enabled", True), schedule=schedule)
    seed_paths = sched_t.strings("projects")
    if sched_t.get("projects") == []:
        raise sched_t.fail("projects", "at least one project path (or remove the key)", [])
    sched_t.done()

    mon_t = top.table("systemd_monitor")
    monitor = MonitorConfig(
        enabled=mon_t.flag("enabled", False),
        units=mon_t.strings("units"),
        user=mon_t.flag("user", False),
        settle=mon_t.number("settle", 10.0),
        restart_timeout=mon_t.number("restart_timeout", 90.0, minimum=1),
        heal_limit=mon_t.number("heal_limit", 3, integer=True),
        heal_window=mon_t.number("heal_window", 3600.0, minimum=1),
        journal_lines=mon_t.number("journal_lines", 80, integer=True, minimum=1),
    )
    mon_t.done()

    web_t = top.table("web")
    port = web_t.number("port", 8001, integer=True, minimum=1)
    if port > 65535:
        raise web_t.fail("port", "a port number from 1 to 65535", port)
    web = WebConfig(
        host=web_t.text("host", "127.0.0.1"),
        port=port,
        token=web_t.text("token"),
        allow=web_t.get("allow"),
    )
    if web.allow is not None and not isinstance(web.allow, (dict, bool)):
        raise web_t.fail("allow", "a Datasette allow block (a table) or true/false", web.allow)
    web_t.done()

    git_t = top.table("git")
    git = GitConfig(author=git_t.text("author", ""), timeout=git_t.number("timeout", 120.0, minimum=1))
    if git.author and not re.match(r"^[^<>]+ <[^<>]+>$", git.author):
        raise git_t.fail("author", "'Name <email>'", git.author)
    git_t.done()

    policy = _policy(top.table("policy"), PatchPolicy())

    projects: list[Project] = []
    for p in seed_paths:
        path = _path(p, base)
        projects.append(Project(name=name_from_path(path), path=path, unit=f"{path.name}.service", policy=policy))
    tables = top.get("project", "projects") or []
    if not isinstance(tables, list):
        raise ConfigError(f"{name}: project: expected [[project]] tables, got {_kind(tables)}")
    for i, t in enumerate(tables):
        projects.append(_project(_Reader(name, f"project[{i}]", t), base, policy))
    top.done()

    seen: dict[str, Project] = {}
    for proj in projects:
        if proj.name in seen:
            raise ConfigError(f"{name}: project {proj.name!r} is configured twice; give one a different name")
        seen[proj.name] = proj

    return Config(
        path=file, llm=llm, projects=tuple(projects), database=database, state_dir=state_dir,
        queue_dir=queue_dir, scheduler=scheduler, monitor=monitor, web=web, git=git,
    )  # fmt: skip


def _options(t: _Reader) -> dict[str, Any]:
    v = t.get("options", "extra")
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise t.fail("options", "a table of codex -c overrides", v)
    return v


def _policy(t: _Reader, d: PatchPolicy) -> PatchPolicy:
    policy = PatchPolicy(
        max_files=t.number("max_files", d.max_files, integer=True, minimum=1),
        max_lines=t.number("max_lines", d.max_lines, integer=True, minimum=1),
        protected=t.strings("protected", d.protected) + t.strings("extra_protected"),
        allow_new_files=t.flag("allow_new_files", d.allow_new_files),
        allow_delete=t.flag("allow_delete", d.allow_delete),
        allow_exec=t.flag("allow_exec", d.allow_exec),
        allow_binary=t.flag("allow_binary", d.allow_binary),
    )
    t.done()
    return policy


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def name_from_path(path: Path) -> str:
    """A project name derived from its directory: unusual characters become '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.name).strip("-._")[:64] or "project"


def _project(t: _Reader, base: Path, policy: PatchPolicy) -> Project:
    raw_path = t.text("path")
    if not raw_path:
        raise t.fail("path", "the path of the project's git repository", None)
    path = _path(raw_path, base)
    name = t.text("name", name_from_path(path))
    if not _NAME.match(name):
        raise t.fail("name", "letters, digits, '.', '_' or '-' (at most 64)", name)
    unit = t.text("unit", f"{path.name}.service")
    if "." not in unit:
        unit += ".service"
    mode = t.text("mode", "push", choices=MODES)
    project = Project(
        name=name,
        path=path,
        unit=unit,
        restart=t.flag("restart", True),
        remote=t.text("remote", "origin"),
        branch=t.text("branch"),
        push_branch=t.text("push_branch"),
        test=t.command("test"),
        test_timeout=t.number("test_timeout", 900.0, minimum=1),
        mode=mode,
        propose_when=t.text("propose_when", "signal", choices=PROPOSE_WHEN),
        retries=t.number("retries", 1, integer=True),
        summary_file=t.text("summary_file", "codex.md"),
        provider=t.text("provider", None, choices=PROVIDERS),
        command=t.command("command"),
        policy=_policy(t.table("policy"), policy) if t.get("policy") is not None else policy,
    )
    if project.summary_file and (Path(project.summary_file).is_absolute() or ".." in Path(project.summary_file).parts):
        raise t.fail("summary_file", 'a file name inside the project (or "" to disable)', project.summary_file)
    t.done()
    return project


def check_project_path(project: Project) -> str | None:
    """Why this project's path cannot be used, or None. Reported per project, not at load time."""
    if not project.path.exists():
        return f"project {project.name!r}: path {project.path} does not exist"
    if not project.path.is_dir():
        return f"project {project.name!r}: path {project.path} is not a directory"
    if not (project.path / ".git").exists():
        return f"project {project.name!r}: {project.path} is not a git repository (no .git)"
    return None
