"""What the plugin knows inside the Datasette process: the configuration, the token, the database.

The configuration comes from the plugin config (`metadata["plugins"]["pimainteno"]["config"]`,
set by `pimainteno dashboard`) or the environment (PIMAINTENO_CONFIG). It is re-read when the
file changes. Without one the pages still render from the database, and the POST routes refuse.
"""

from __future__ import annotations

import hmac
import os
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from pimainteno.config import Config

PLUGIN = "pimainteno"
TOKEN_ENV = "PIMAINTENO_WEB_TOKEN"
TOKEN_ACTOR = {"id": "pimainteno-token", "pimainteno_token": True}
_RECHECK_S = 10.0  # how long "this database is not a pimainteno database" is believed
_STAT_S = 1.0  # how long a loaded configuration is used before its file is checked for changes


@dataclass(frozen=True)
class Loaded:
    config: Config | None
    problem: str | None  # why there is no config, said to whoever presses a button
    secrets: tuple[str, ...] = field(default=(), repr=False)  # never shown on a page, longest first


_lock = threading.Lock()
_cache: dict[str, tuple[float, float, Loaded]] = {}  # path: (checked at, mtime, loaded)
_db_cache: dict[str, tuple[bool, float]] = {}
# plugin_config() re-merges all metadata on every call; render_cell asks once per table cell.
_paths: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def config_path(datasette: Any) -> str | None:
    """The configuration file, fixed for the life of a Datasette instance."""
    try:
        return _paths[datasette]
    except KeyError:
        plugin_config = datasette.plugin_config(PLUGIN) or {}
        path = plugin_config.get("config") or os.environ.get("PIMAINTENO_CONFIG") or None
        _paths[datasette] = path
        return path


def load(datasette: Any) -> Loaded:
    """The configuration (cached; re-read when the file's mtime changes)."""
    path = config_path(datasette)
    if not path:
        return Loaded(
            None,
            "no pimainteno configuration is known to this dashboard: start it with `pimainteno dashboard`, "
            "or set PIMAINTENO_CONFIG for `datasette`",
        )
    now = time.monotonic()
    with _lock:
        cached = _cache.get(path)
    if cached and now - cached[0] < _STAT_S:
        return cached[2]
    try:
        mtime = os.stat(path).st_mtime
    except OSError as e:
        return Loaded(None, f"the pimainteno configuration {path} cannot be read ({e.strerror})")
    if cached and cached[1] == mtime:
        with _lock:
            _cache[path] = (now, mtime, cached[2])
        return cached[2]
    from pimainteno import config as config_mod
    from pimainteno.errors import PimaintenoError

    try:
        cfg = config_mod.load(path)
        loaded = Loaded(cfg, None, _secrets_of(cfg))
    except PimaintenoError as e:
        loaded = Loaded(None, f"the pimainteno configuration is invalid: {e}", _secrets_of(None))
    with _lock:
        _cache[path] = (now, mtime, loaded)
    return loaded


def configured_tokens(datasette: Any) -> list[str]:
    """The Bearer tokens accepted: the config's `[web] token` and PIMAINTENO_WEB_TOKEN."""
    cfg = load(datasette).config
    return [t for t in ((cfg.web.token if cfg else None), os.environ.get(TOKEN_ENV)) if t]


def actor_for_bearer(datasette: Any, authorization: str) -> dict[str, Any] | None:
    """The token actor when `Authorization: Bearer <token>` carries a configured token."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    offered = given.strip().encode()
    # Every token is compared, in constant time, so the timing says nothing about which one nearly matched.
    matches = [hmac.compare_digest(offered, token.encode()) for token in configured_tokens(datasette)]
    return dict(TOKEN_ACTOR) if any(matches) else None


def secrets(datasette: Any) -> list[str]:
    """Values that must never appear on a page (api keys, the web token), longest first."""
    return list(load(datasette).secrets or _secrets_of(None))


def _secrets_of(cfg: Config | None) -> tuple[str, ...]:
    values = [os.environ.get(TOKEN_ENV)]
    if cfg:
        values += [cfg.llm.api_key, cfg.web.token, os.environ.get(cfg.llm.api_key_env)]
    return tuple(sorted({v for v in values if v and len(v) >= 8}, key=len, reverse=True))


def _has_pimainteno_tables(path: str) -> bool:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return {"projects", "runs", "proposals", "status"} <= names


def is_pimainteno_db(datasette: Any, name: str) -> bool:
    db = datasette.databases.get(name)
    if db is None or db.is_memory or not db.path:
        return False
    now = time.monotonic()
    with _lock:
        known = _db_cache.get(db.path)
    if known and (known[0] or now - known[1] < _RECHECK_S):
        return known[0]
    found = _has_pimainteno_tables(db.path)
    with _lock:
        _db_cache[db.path] = (found, now)
    return found


def database_name(datasette: Any) -> str | None:
    """The attached database that holds pimainteno's tables (plugin config `database` wins)."""
    wanted = (datasette.plugin_config(PLUGIN) or {}).get("database")
    if wanted and wanted in datasette.databases:
        return str(wanted)
    for name in list(datasette.databases):
        if name != "_internal" and is_pimainteno_db(datasette, name):
            return str(name)
    return None
