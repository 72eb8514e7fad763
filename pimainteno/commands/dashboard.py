"""`pimainteno dashboard`: Datasette on the database with the pimainteno plugin.

The database is served in Datasette's normal mode (read-only connections that see new rows), never
`--immutable`, since the other commands keep writing it. The signing secret lives in the state
directory (0600) so a restart keeps people logged in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pimainteno.app import App
from pimainteno.errors import InputError, ToolError
from pimainteno.serve import listen

log = logging.getLogger("pimainteno")

SECRET_FILE = "dashboard-secret"
SETTINGS = {"default_cache_ttl": 0, "suggest_facets": False}


def signing_secret(state_dir: Path) -> str:
    """The dashboard's signing secret: created once (0600), then reused."""
    path = state_dir / SECRET_FILE
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=f".{SECRET_FILE}.", dir=state_dir)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):  # another process made one first: use theirs
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    try:
        if path.stat().st_mode & 0o077:
            log.warning("%s was readable by others; making it 0600", path)
            os.chmod(path, 0o600)
        value = path.read_text().strip()
    except OSError as e:
        raise ToolError(f"{path}: {e.strerror}; check the state directory's permissions") from None
    if len(value) < 32:
        raise InputError(f"{path}: the dashboard secret is too short; delete the file to make a new one")
    return value


@dataclass
class Prepared:
    datasette: Any
    sock: socket.socket
    url: str
    login_url: str


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _base_url(host: str, port: int) -> str:
    # A wildcard bind is reachable under this machine's name, from here and elsewhere: say that name.
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def make_datasette(db_path: Path, config_path: Path | None, secret: str) -> Any:
    """Datasette on the database with the plugin, its metadata and settings (what tests use too)."""
    from datasette.app import Datasette

    from pimainteno.dashboard import metadata
    from pimainteno.dashboard.plugin import register

    register()
    db_path = db_path.resolve()
    return Datasette(
        [str(db_path)],
        metadata=metadata.build(db_path.stem, str(config_path.resolve()) if config_path else None),
        settings=dict(SETTINGS),
        secret=secret,
    )


def prepare(app: App, host: str | None = None, port: int | None = None) -> Prepared:
    """Everything but serving: database ready, secret, Datasette built, socket bound."""
    cfg = app.config
    host = host if host is not None else cfg.web.host
    port = port if port is not None else cfg.web.port
    app.db.conn.close()  # creates and migrates the database (WAL on) before Datasette opens it read-only
    ds = make_datasette(app.database_path, cfg.path, signing_secret(app.state_dir))
    sock = listen(host, port)
    url = _base_url(host, sock.getsockname()[1])
    login = f"{url}{ds.urls.path('-/auth-token')}?token={ds._root_token}"
    if not _is_loopback(host):
        log.warning("the dashboard listens on %s, not only this machine; put it behind a proxy with TLS", host)
    return Prepared(ds, sock, url + "/", login)


def dashboard(app: App, host: str | None = None, port: int | None = None) -> None:
    prepared = prepare(app, host, port)
    import uvicorn

    print(f"Dashboard: {prepared.url}", flush=True)
    print(f"Log in as root (works once): {prepared.login_url}", flush=True)
    config = uvicorn.Config(prepared.datasette.app(), log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[prepared.sock])
    finally:
        prepared.sock.close()
