"""The configuration schema, declared once: every table, key, type, default and meaning.

Loading (`check.build`), the derived values (`resolve` in `__init__`), docs/configuration.md's
tables and the starter file's comments (`docs.py`) all read these classes; nothing else states a
default. A key's type is its annotation; `key()` adds the meaning, bounds and aliases.
"""

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import pimainteno.config.forms as forms  # the sibling, not through this package's facade (which imports us)

Command = str | tuple[str, ...]
NO_LLM = {"llm": '"llm" is not available; use codex or command'}
Mode = Literal["propose", "apply", "commit", "push"]
MODES: tuple[str, ...] = get_args(Mode)  # how far an automatic run may go, in chain order
Event = Literal[
    "pushed", "rolled_back", "heal_gave_up", "failure", "proposal_waiting", "run_failed", "stale", "diverged"
]
EVENTS: tuple[Event, ...] = get_args(Event)  # every event, in this order


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
    example: Any = None,
    secret: bool = False,
) -> Any:
    """One key: `doc` is its meaning, `shown` the default as the docs say it when not a literal,
    `expected` the phrase an error uses, `check` returns what was expected when a value is refused,
    `coerce` turns a shorthand (e.g. `sandbox = false`) into the full form before checking, and
    `refused` maps values that are known but not accepted to the reason (one line), and
    `example` is what the example file shows for a key that is unset by default."""
    meta: dict[str, Any] = {"doc": doc, "shown": shown, "expected": expected, "ge": ge, "le": le, "aliases": aliases}
    meta |= {"check": check, "coerce": coerce, "refused": refused or {}, "example": example, "secret": secret}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class LLMConfig:
    provider: Literal["codex", "command"] = key(
        "codex", refused=NO_LLM, doc="`codex` (the codex CLI) or `command` (a fixer that edits the worktree; offline)"
    )
    model: str | None = key(None, shown="codex's default", doc="passed to codex as `-m`", example="gpt-5-codex")
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={
            "doc": "given to codex only through its environment (`api_key_env`); never stored or shown",
            "example": "sk-...",
        },
    )
    api_key_env: str = key("OPENAI_API_KEY", doc="the environment variable that carries `api_key`")
    codex: str = key("codex", doc="the codex executable, a name on `PATH` or a path")
    extra_args: tuple[str, ...] = key((), aliases=("args", "extra_flags"), doc="raw codex CLI arguments")
    options: dict[str, Any] = key(
        factory=dict,
        aliases=("extra",),
        expected="a table of codex -c overrides",
        doc="codex `-c key=value` overrides as a table, e.g. a local model provider",
    )
    command: Command | None = key(
        None,
        check=forms.command,
        expected=forms.COMMAND,
        doc="the `command` provider's fixer: a trusted shell string or a list of arguments",
        example="ruff check --fix --quiet .",
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
        (
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
        ),
        doc="globs no patch may touch (`**` spans directories)",
    )
    extra_protected: tuple[str, ...] = key((), doc="added to `protected`")
    allow_new_files: bool = key(True, doc="may a patch create files")
    allow_delete: bool = key(True, doc="may a patch delete files")
    allow_exec: bool = key(False, doc="may a patch set the executable bit")
    allow_binary: bool = key(False, doc="may a patch change binary files")


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
    path: Path = key(
        doc="the project's git repository", expected="the path of the project's git repository", example="~/src/api"
    )
    name: str = key(
        "", shown="the directory name", check=forms.name, doc="letters, digits, `.`, `_`, `-`", example="api"
    )
    unit: str = key(
        "",
        shown="`<dirname>.service`",
        check=forms.unit,
        doc="the systemd unit restarted after a push and watched for failures (`.service` added when no suffix)",
        example="api.service",
    )
    restart: bool = key(
        True,
        doc="restart `unit` after a run pushed a commit and check it stays healthy; when it does not, the"
        " commit is reverted (the revert pushed, the unit restarted again)",
    )
    remote: str = key("origin", doc="where to push")
    branch: str | None = key(None, shown="the branch checked out", doc="the branch to push to", example="main")
    push_branch: str | None = key(None, doc="push here instead, for review", example="pimainteno")
    test: Command | None = key(
        None,
        check=forms.command,
        expected=forms.COMMAND,
        doc="the project's test command (a trusted shell string or a list of arguments);"
        " proves every patch in a clean worktree before it lands",
        example="python -m pytest -q",
    )
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
        "codex.md",
        check=forms.summary_file,
        doc="written in the project only when absent or pimainteno's own (its marker first line), then kept out of"
        " `git status` via `.git/info/exclude`; a user's file is left alone and the summary goes to the state"
        ' directory\'s `summaries/`; `""` disables',
    )
    provider: Literal["codex", "command"] | None = key(
        None,
        refused=NO_LLM,
        shown="`[llm] provider`",
        doc="per-project override",
        example="command",
    )
    command: Command | None = key(
        None,
        check=forms.command,
        expected=forms.COMMAND,
        shown="`[llm] command`",
        doc="per-project override",
        example=["ruff", "check", "--fix", "."],
    )
    sandbox: Sandbox = key(
        factory=Sandbox,
        coerce=forms.sandbox_shorthand,
        expected="true, false or a table {network, writable}",
        shown="`true`",
        doc="`true`, `false`, or a table `{network = false, writable = []}` (see `[project.sandbox]`)",
    )
    health: str | None = key(
        None,
        check=forms.health_form,
        doc="a health probe after every restart and every `health_interval`: a trusted shell command, an"
        " `http://`/`https://` URL (healthy on 2xx/3xx) or `tcp://host:port` (connects)",
        example="http://127.0.0.1:8080/health",
    )
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
        "daily",
        aliases=("cron",),
        doc='a cron expression (`"0 3 * * *"`) or a systemd `OnCalendar` expression; cron is normalised'
        " to OnCalendar (`*-*-* 03:00:00`)",
    )
    projects: tuple[Path, ...] | None = key(
        None,
        shown="none",
        check=lambda v: "at least one project path (or remove the key)" if not v else None,
        doc="the seed's list of project paths; each becomes a project named after its directory with unit"
        " `<dirname>.service` and the defaults of `[[project]]`",
        example=["~/src/app"],
    )


@dataclass(frozen=True, kw_only=True)
class MonitorConfig:
    enabled: bool = key(
        False, doc="also watch each project's `unit`; `install-systemd` then enables `pimainteno-watch.service`"
    )
    units: tuple[str, ...] = key(
        (),
        check=forms.units,
        doc="more units whose failures are recorded and start a heal of the project with that unit",
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
    host: str = key(
        "127.0.0.1",
        doc="bind address; anything but loopback loads with a warning: put an authenticating proxy in front",
    )
    port: int = key(8001, ge=1, le=65535, expected="a port number from 1 to 65535", doc="port")
    token: str | None = field(
        default=None,
        repr=False,
        metadata={
            "doc": 'Bearer token that lets scripts POST "Run now" (also `PIMAINTENO_WEB_TOKEN`)',
            "example": "...",
        },
    )
    allow: dict[str, Any] | bool | None = key(
        None,
        shown="root only",
        expected="a Datasette allow block (a table) or true/false",
        doc="a Datasette allow block granting the `pimainteno-run` permission to other actors",
        example={"id": ["alice"]},
    )
    url: str | None = key(
        None,
        check=forms.web_url,
        doc="the dashboard's public URL, for links in notifications",
        example="https://pi.example.net/",
    )


@dataclass(frozen=True, kw_only=True)
class GitConfig:
    author: str = key(
        "",
        shown="`pimainteno <pimainteno@HOSTNAME>`",
        check=forms.author,
        doc='author of pimainteno\'s commits, `"Name <email>"`',
        example="pimainteno <pimainteno@myhost>",
    )
    timeout: float = key(120.0, ge=1, doc="seconds for one git command")

    @property
    def author_or_default(self) -> str:
        import socket  # only pimainteno's own commits need the host name

        return self.author or f"pimainteno <pimainteno@{socket.gethostname()}>"


@dataclass(frozen=True, kw_only=True)
class NotifyConfig:
    urls: tuple[str, ...] = key(  # secret: URLs carry tokens, so an error never repeats them
        (), check=forms.notify_urls, secret=True, doc="apprise URLs to notify (ntfy, Gotify, email, ...)",
        example=["ntfy://pimainteno-alerts"],
    )  # fmt: skip
    events: tuple[Event, ...] = key(EVENTS, doc="which events are sent")
    max_per_hour: int = key(20, ge=0, doc="at most this many notifications per hour; the rest fold into one summary")
    timeout: float = key(10.0, ge=0.1, doc="seconds one notification may take; a slow notifier never slows a run")


@dataclass(frozen=True, kw_only=True)
class ReplicateConfig:  # the fleet (docs/fleet.md): this host's database streamed with Litestream to <url>/<host>
    url: str = key(
        coerce=forms.hide_password, check=forms.replica_url, example="file:///mnt/nas/pimainteno",
        doc="where every host's replica lives, each under `<url>/<host>`: `file:///mnt/nas/pimainteno`,"
        " `sftp://user@nas/dir` or `s3://bucket/dir` (`?endpoint=http://minio:9000` for S3-compatible stores)",
    )  # fmt: skip
    host: str = key(
        factory=forms.short_hostname, shown="the short hostname", check=forms.fleet_host, example="pi-kitchen",
        doc="this host's name in the fleet: letters, digits, `.`, `_`, `-`; two hosts may not share one",
    )  # fmt: skip
    interval: float = key(
        10.0, ge=0.5, le=3600, doc="seconds: Litestream's sync interval, the heartbeat and the central refresh"
    )
    env_file: Path | None = key(
        None, check=forms.env_file, example="/etc/pimainteno/replicate.env",
        doc="KEY=VALUE lines (S3 credentials) given to Litestream's environment; must be mode 0600",
    )  # fmt: skip
    hosts: tuple[str, ...] = key(
        (), check=forms.fleet_hosts, example=["pi-garage"],
        doc="the central view's hosts when the store cannot be listed (s3, sftp); file:// replicas are found",
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)  # read once by resolve()
class DatabaseTable:
    path: Path | None = key(
        None,
        shown="`STATE_DIR/pimainteno.db`",
        doc="the database; a directory (or a path without `.db`/`.sqlite`/`.sqlite3`, the seed's cache"
        " directory) holds `pimainteno.db`; `--db`/`PIMAINTENO_DB` override it",
        example="~/.local/state/pimainteno/pimainteno.db",
    )


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)  # read once by resolve()
class StateTable:
    dir: Path | None = key(
        None,
        shown="`$PIMAINTENO_STATE_DIR`, else `$XDG_STATE_HOME/pimainteno`, else `~/.local/state/pimainteno`",
        doc="worktrees, locks, logs, the dashboard's secret",
        example="~/.local/state/pimainteno",
    )


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)  # read once by resolve()
class QueueTable:
    dir: Path | None = key(
        None,
        shown="`STATE_DIR/queue`",
        doc="the spool directory of triggers",
        example="~/.local/state/pimainteno/queue",
    )


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)  # read once by resolve()
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
    replicate: ReplicateConfig | None = key(None, doc="the fleet: stream this host's database with Litestream")
    project: tuple[Project, ...] = key(
        (), aliases=("projects",), expected="[[project]] tables", doc="one table per project"
    )
