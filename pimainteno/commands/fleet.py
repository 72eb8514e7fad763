"""`pimainteno fleet`: one read-only Datasette over every host's replicated database.

Each host found under `[replicate] url` is restored into `<state>/fleet-cache/<host>/` and served
as a database named after the host (`/host-a/runs`); `/-/fleet` is the overview. No writes: the
host plugin's buttons find no configuration and no logged-in actor here, so they refuse.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pimainteno import fleet
from pimainteno.app import App
from pimainteno.config import ReplicateConfig
from pimainteno.serve import listen

log = logging.getLogger("pimainteno")
CACHE = "fleet-cache"
DEFAULT_PORT = 8002  # next to a host dashboard's 8001 on the same machine
SETTINGS = {"default_cache_ttl": 0, "suggest_facets": False}


def make_datasette(replicate: ReplicateConfig, state_dir: Path) -> tuple[object, object]:
    """Datasette with no database yet, the fleet plugin, and the refresher started: (datasette, fleet)."""
    from datasette.app import Datasette

    from pimainteno import fleet_restore
    from pimainteno.dashboard import fleet as view
    from pimainteno.dashboard import metadata

    fleet.require_litestream()
    env = fleet.environment(replicate)
    cache = state_dir / CACHE
    fleet_restore.reset_cache(cache)
    # The host plugin's buttons would write into this machine's queue: give it no configuration.
    os.environ.pop("PIMAINTENO_CONFIG", None)
    view.register()
    ds = Datasette([], metadata={"title": "pimainteno fleet", "description": metadata.DESCRIPTION, **view.METADATA},
                   settings=dict(SETTINGS))  # fmt: skip
    state = view.Fleet(replicate, cache, env)
    view.attach(ds, state)
    return ds, state


def serve(app: App, replicate: ReplicateConfig, host: str | None, port: int | None) -> None:
    import uvicorn

    ds, _ = make_datasette(replicate, state_dir_of(app))
    host = host if host is not None else "127.0.0.1"
    sock = listen(host, port if port is not None else DEFAULT_PORT)
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("the fleet view listens on %s, not only this machine; put it behind a proxy with TLS", host)
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    print(f"Fleet: http://{f'[{shown}]' if ':' in shown else shown}:{sock.getsockname()[1]}/-/fleet", flush=True)
    server = uvicorn.Server(uvicorn.Config(ds.app(), log_level="warning", lifespan="on", access_log=False))  # type: ignore[attr-defined]
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def state_dir_of(app: App) -> Path:
    """The configuration's state directory; the default one on a central machine without a configuration."""
    from pimainteno.config import default_state_dir
    from pimainteno.errors import ConfigError

    try:
        return app.state_dir
    except ConfigError as e:
        if "no such file" not in str(e):
            raise
        return default_state_dir()
