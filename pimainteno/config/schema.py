"""The configuration schema, declared once: every table, key, type, default and meaning.

Loading (`check.build`), the derived values (`resolve` in `__init__`), docs/configuration.md's
tables and the starter file's comments (`docs.py`) all read these classes; nothing else states a
default. A key's type is its annotation; `key()` adds the meaning, bounds and aliases.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal

Command = str | tuple[str, ...]
NO_LLM = {"llm": '"llm" is not available; use codex or command'}
Mode = Literal["propose", "apply", "commit", "push"]
Event = Literal["pushed", "rolled_back", "heal_gave_up", "failure", "proposal_waiting", "run_failed", "stale"]
EVENTS: tuple[Event, ...] = (
    "pushed",
    "rolled_back",
    "heal_gave_up",
    "failure",
    "proposal_waiting",
    "run_failed",
    "stale",
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
UNIT = re.compile(r"[A-Za-z0-9:_.\\@-]{1,255}")


def key(
    default: Any = MISSING,
    *,
    doc: str,
    shown: str | None = None,
    expected: str | None = None,
    ge: float | None = None,
    le: float | None = None,
    aliases: tuple[str, ...] = (),
    check: Callable[[Any], str | None] | None = None,
    coerce: Callable[[Any], Any] | None = None,
    factory: Callable[[], Any] | None = None,
    refused: dict[str, str] | None = None,
) -> Any:
    """One key: `doc` is its meaning, `shown` the default as the docs say it when not a literal,
    `expected` the phrase an error uses, `check` returns what was expected when a value is refused,
    `coerce` turns a shorthand (e.g. `sandbox = false`) into the full form before checking, and
    `refused` maps values that are known but not accepted to the reason (one line)."""
    meta: dict[str, Any] = {"doc": doc, "shown": shown, "expected": expected, "ge": ge, "le": le, "aliases": aliases}
    meta |= {"check": check, "coerce": coerce, "refused": refused or {}}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


COMMAND = "a command (a shell string or a non-empty list of arguments)"


def _command(v: Any) -> str | None:
    ok = v.strip() if isinstance(v, str) else (v and all(isinstance(x, str) for x in v))
    return None if ok else COMMAND


def _name(v: str) -> str | None:
    return None if NAME.fullmatch(v) else "letters, digits, '.', '_' or '-' (at most 64)"


def _unit(v: str) -> str | None:
    return None if UNIT.fullmatch(v) else "a systemd unit name (letters, digits, ':', '_', '.', '\\', '@', '-')"


def _units(v: tuple[str, ...]) -> str | None:
    return next((_unit(u) for u in v if _unit(u)), None)


def _author(v: str) -> str | None:
    return None if not v or re.fullmatch(r"[^<>]+ <[^<>]+>", v) else "'Name <email>'"


def _summary_file(v: str) -> str | None:
    bad = Path(v).is_absolute() or ".." in Path(v).parts
    return 'a file name inside the project (or "" to disable)' if v and bad else None


def health_form(v: str) -> str | None:
    """A health probe: an http(s) URL, tcp://host:port, or a trusted shell command."""
    from urllib.parse import urlsplit

    expected = "a command, an http:// or https:// URL, or tcp://host:port"
    if not v.strip():
        return expected
    scheme = v.split("://", 1)[0].lower() if "://" in v else ""
    try:
        parts = urlsplit(v)
        port = parts.port
    except ValueError:
        return expected
    if scheme in ("http", "https"):
        return None if parts.hostname else expected
    if scheme == "tcp":
        return None if parts.hostname and port and parts.path in ("", "/") else expected
    return None


def _notify_urls(v: tuple[str, ...]) -> str | None:
    ok = all(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", u) for u in v)
    return None if ok else "apprise URLs such as 'ntfy://topic' or 'json://host/path'"


def _web_url(v: str | None) -> str | None:
    from urllib.parse import urlsplit

    ok = v is None or (urlsplit(v).scheme in ("http", "https") and bool(urlsplit(v).hostname))
    return None if ok else "an http:// or https:// URL"


@dataclass(frozen=True, kw_only=True)
class LLMConfig:
    provider: Literal["codex", "command"] = key(
        "codex", refused=NO_LLM, doc="`codex` (the codex CLI) or `command` (a fixer that edits the worktree; offline)"
    )
    model: str | None = key(None, shown="codex's default", doc="passed to codex as `-m`")
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={"doc": "given to codex only through its environment (`api_key_env`); never stored or shown"},
    )
    api_key_env: str = key("OPENAI_API_KEY", doc="the environment variable that carries `api_key`")
    codex: str = key("codex", doc="the codex executable, a name on `PATH` or a path")
    extra_args: tuple[str, ...] = key((), aliases=("args", "extra_flags"), doc="raw codex CLI arguments")
    options: dict[str, Any] = key(
        factory=dict, aliases=("extra",), expected="a table of codex -c overrides",
        doc="codex `-c key=value` overrides as a table, e.g. a local model provider",
    )  # fmt: skip
    command: Command | None = key(
        None,
        check=_command,
        expected=COMMAND,
        doc="the `command` provider's fixer: a trusted shell string or a list of arguments",
    )
    timeout: float = key(600.0, ge=1, doc="seconds before a model run's whole process group is killed")
    analytics: bool = key(
        False,
        doc="let codex send analytics. codex spends ~5 s per run trying to send them when it has no route"
        " out (measured 5.8 s vs 0.4 s with analytics off); pimainteno passes"
        " `-c analytics.enabled=false` unless this is true",
    )


@dataclass(frozen=True, kw_only=True)
class PatchPolicy:
    max_files: int = key(20, ge=1, doc="files one patch may touch")
    max_lines: int = key(1000, ge=1, doc="added + removed lines")
    protected: tuple[str, ...] = key(
        (".git/**", ".github/workflows/**", ".gitlab-ci.yml", ".gitmodules", ".gitattributes", ".env",
         ".env.*", "**/*.pem", "**/*.key", "**/id_rsa*", "PiMainteno.toml"),
        doc="globs no patch may touch (`**` spans directories)",
    )  # fmt: skip
    extra_protected: tuple[str, ...] = key((), doc="added to `protected`")
    allow_new_files: bool = key(True, doc="may a patch create files")
    allow_delete: bool = key(True, doc="may a patch delete files")
    allow_exec: bool = key(False, doc="may a patch set the executable bit")
    allow_binary: bool = key(False, doc="may a patch change binary files")


def _sandbox_shorthand(v: Any) -> Any:
    return {"enabled": v} if isinstance(v, bool) else v


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    enabled: bool = key(
        True,
        doc="run the tests in bubblewrap with the patched tree at the project's path; `sandbox = false`"
        " is UNSAFE: model-written code then runs with your full rights before anyone has seen it",
    )
    network: bool = key(
        False, doc="let the tests reach the network (model-written code can then send data out or attack hosts)"
    )
    writable: tuple[Path, ...] = key(
        (), doc="paths the tests may write, e.g. a cache (model-written code can then change or plant files there)"
    )


@dataclass(frozen=True, kw_only=True)
class Project:
    path: Path = key(doc="the project's git repository", expected="the path of the project's git repository")
    name: str = key("", shown="the directory name", check=_name, doc="letters, digits, `.`, `_`, `-`")
    unit: str = key(
        "", shown="`<dirname>.service`", check=_unit,
        doc="the systemd unit restarted after a push and watched for failures (`.service` added when no suffix)",
    )  # fmt: skip
    restart: bool = key(
        True,
        doc="restart `unit` after a run pushed a commit and check it stays healthy; when it does not, the"
        " commit is reverted (the revert pushed, the unit restarted again)",
    )
    remote: str = key("origin", doc="where to push")
    branch: str | None = key(None, shown="the branch checked out", doc="the branch to push to")
    push_branch: str | None = key(None, doc="push here instead, for review")
    test: Command | None = key(
        None, check=_command, expected=COMMAND, doc="the project's test command (a trusted shell string or a list of arguments);"
        " proves every patch in a clean worktree before it lands",
    )  # fmt: skip
    test_timeout: float = key(900.0, ge=1, doc="seconds")
    mode: Mode = key("push", doc="how far automatic runs go: `propose`, `apply`, `commit` or `push`")
    unproven: Literal["propose", "push"] = key(
        "propose",
        doc="what automatic runs do when no `test` is configured: `propose` (the proposal waits for a person)"
        " or `push` (the seed's old, unproven behaviour)",
    )
    propose_when: Literal["signal", "always"] = key(
        "signal",
        doc="`signal`: ask a model only when HEAD moved, the tests fail or the unit failed; `always`: every run",
    )
    retries: int = key(1, ge=0, doc="new proposals after one fails the tests (the next prompt carries that output)")
    summary_file: str = key(
        "codex.md", check=_summary_file,
        doc="written in the project and kept out of `git status` via `.git/info/exclude`; `\"\"` disables",
    )  # fmt: skip
    provider: Literal["codex", "command"] | None = key(
        None, refused=NO_LLM, shown="`[llm] provider`", doc="per-project override"
    )
    command: Command | None = key(
        None, check=_command, expected=COMMAND, shown="`[llm] command`", doc="per-project override"
    )
    sandbox: Sandbox = key(
        factory=Sandbox, coerce=_sandbox_shorthand, expected="true, false or a table {network, writable}",
        shown="`true`", doc="`true`, `false`, or a table `{network = false, writable = []}` (see `[project.sandbox]`)",
    )  # fmt: skip
    health: str | None = key(
        None, check=health_form,
        doc="a health probe after every restart and every `health_interval`: a trusted shell command, an"
        " `http://`/`https://` URL (healthy on 2xx/3xx) or `tcp://host:port` (connects)",
    )  # fmt: skip
    health_timeout: float = key(5.0, ge=0.1, doc="seconds one probe may take")
    health_passes: int = key(1, ge=1, doc="probes in a row that must pass within `settle` after a restart")
    health_interval: float = key(30.0, ge=1, doc="seconds between probes of a running unit by `watch`")
    health_failures: int = key(3, ge=1, doc="failed probes in a row that count as a failure of the unit")
    policy: PatchPolicy = key(
        factory=PatchPolicy, shown="`[policy]`", doc="refines `[policy]` for this project (`[project.policy]`)"
    )


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    enabled: bool = key(True, doc="whether `install-systemd` enables the timers")
    schedule: str = key(
        "daily", aliases=("cron",),
        doc="a cron expression (`\"0 3 * * *\"`) or a systemd `OnCalendar` expression; cron is normalised"
        " to OnCalendar (`*-*-* 03:00:00`)",
    )  # fmt: skip
    projects: tuple[Path, ...] | None = key(
        None, shown="none", check=lambda v: "at least one project path (or remove the key)" if not v else None,
        doc="the seed's list of project paths; each becomes a project named after its directory with unit"
        " `<dirname>.service` and the defaults of `[[project]]`",
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class MonitorConfig:
    enabled: bool = key(
        False, doc="also watch each project's `unit`; `install-systemd` then enables `pimainteno-watch.service`"
    )
    units: tuple[str, ...] = key(
        (), check=_units, doc="more units whose failures are recorded and start a heal of the project with that unit"
    )
    user: bool = key(False, doc="use the user bus (`systemctl --user`)")
    settle: float = key(10.0, ge=0, doc="seconds a restarted unit must stay active to be healthy")
    restart_timeout: float = key(90.0, ge=1, doc="seconds to wait for a restart job")
    heal_limit: int = key(3, ge=0, doc='at most this many heals per unit per `heal_window`; then "gave up"')
    heal_window: float = key(3600.0, ge=1, doc="seconds")
    journal_lines: int = key(80, ge=1, doc="journal lines kept with a failure (also bounded in bytes)")
    coalesce: float = key(60.0, ge=0, doc="repeated failures of one unit within this many seconds are one row")
    retention_days: float = key(30.0, ge=0, doc="failure rows older than this many days are pruned")


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    host: str = key("127.0.0.1", doc="bind address; anything but loopback loads with a warning: put an"
                    " authenticating proxy in front")  # fmt: skip
    port: int = key(8001, ge=1, le=65535, expected="a port number from 1 to 65535", doc="port")
    token: str | None = field(
        default=None,
        repr=False,
        metadata={"doc": 'Bearer token that lets scripts POST "Run now" (also `PIMAINTENO_WEB_TOKEN`)'},
    )
    allow: dict[str, Any] | bool | None = key(
        None, shown="root only", expected="a Datasette allow block (a table) or true/false",
        doc="a Datasette allow block granting the `pimainteno-run` permission to other actors",
    )  # fmt: skip
    url: str | None = key(None, check=_web_url, doc="the dashboard's public URL, for links in notifications")


@dataclass(frozen=True, kw_only=True)
class GitConfig:
    author: str = key(
        "", shown="`pimainteno <pimainteno@HOSTNAME>`", check=_author,
        doc="author of pimainteno's commits, `\"Name <email>\"`",
    )  # fmt: skip
    timeout: float = key(120.0, ge=1, doc="seconds for one git command")

    @property
    def author_or_default(self) -> str:
        import socket  # only pimainteno's own commits need the host name

        return self.author or f"pimainteno <pimainteno@{socket.gethostname()}>"


@dataclass(frozen=True, kw_only=True)
class NotifyConfig:
    urls: tuple[str, ...] = key((), check=_notify_urls, doc="apprise URLs to notify (ntfy, Gotify, email, ...)")
    events: tuple[Event, ...] = key(EVENTS, doc="which events are sent")
    max_per_hour: int = key(20, ge=0, doc="at most this many notifications per hour; the rest fold into one summary")
    timeout: float = key(10.0, ge=0.1, doc="seconds one notification may take; a slow notifier never slows a run")


@dataclass(frozen=True, kw_only=True)
class DatabaseTable:
    path: Path | None = key(
        None, shown="`STATE_DIR/pimainteno.db`",
        doc="the database; a directory (or a path without `.db`/`.sqlite`/`.sqlite3`, the seed's cache"
        " directory) holds `pimainteno.db`; `--db`/`PIMAINTENO_DB` override it",
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class StateTable:
    dir: Path | None = key(
        None, shown="`$PIMAINTENO_STATE_DIR`, else `$XDG_STATE_HOME/pimainteno`, else `~/.local/state/pimainteno`",
        doc="worktrees, locks, logs, the dashboard's secret",
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class QueueTable:
    dir: Path | None = key(None, shown="`STATE_DIR/queue`", doc="the spool directory of triggers")


@dataclass(frozen=True, kw_only=True)
class File:
    """The top level of PiMainteno.toml."""

    llm: LLMConfig = key(factory=LLMConfig, doc="where patches, summaries and commit messages come from")
    database: DatabaseTable = key(factory=DatabaseTable, aliases=("cache",), doc="the SQLite database")
    state: StateTable = key(factory=StateTable, doc="pimainteno's own files")
    queue: QueueTable = key(factory=QueueTable, doc="the trigger queue")
    scheduler: SchedulerConfig = key(factory=SchedulerConfig, doc="timed runs")
    systemd_monitor: MonitorConfig = key(factory=MonitorConfig, doc="failures, restarts and heals")
    web: WebConfig = key(factory=WebConfig, doc="the dashboard")
    git: GitConfig = key(factory=GitConfig, doc="pimainteno's git commands")
    notify: NotifyConfig = key(factory=NotifyConfig, doc="notifications through apprise")
    policy: PatchPolicy = key(factory=PatchPolicy, doc="what a patch may do")
    project: tuple[Project, ...] = key(
        (), aliases=("projects",), expected="[[project]] tables", doc="one table per project"
    )
