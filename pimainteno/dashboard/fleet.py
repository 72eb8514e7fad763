"""The central fleet view inside Datasette: every host a database, `/-/fleet` the overview.

Registered only by `pimainteno fleet` (a host's own dashboard has no fleet). A refresher thread
restores each host's replica (pimainteno.fleet_restore) every interval and swaps the new copy in
with `add_database`; it is a thread, not a startup task, because Datasette 0.65 runs startup hooks
on the first request and the fleet must be fresh before anyone asks. Nothing here writes: no
buttons, no POST routes; each host's own dashboard is linked when its URL is known.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from datasette import hookimpl
from datasette.database import Database, connections
from datasette.utils.asgi import Forbidden, Response

from pimainteno import fleet as fleet_mod
from pimainteno import fleet_restore
from pimainteno.config import ReplicateConfig
from pimainteno.errors import PimaintenoError
from pimainteno.fleet_restore import HostView

log = logging.getLogger("pimainteno")
PLUGIN = "pimainteno-fleet"
METADATA = {"plugins": {PLUGIN: {"fleet": True}}}  # what make_datasette passes to mark the fleet's Datasette
RESTORE_WORKERS = 4  # hosts restored at once: one slow store does not hold up the others
NO_STORE = {"Cache-Control": "no-store"}


class Snapshot(Database):
    """A restored copy. Datasette 0.65 keeps one read connection per thread *per database name*, so
    a new copy under the same name would be read through the old file forever; each copy gets its
    own key, and a thread closes its connection to an older copy when it first reads the new one."""

    def __init__(self, ds: Any, path: Path, generation: int):
        super().__init__(ds, path=str(path), is_mutable=True)
        self.generation = generation

    async def execute_fn(self, fn: Any) -> Any:
        if self.ds.executor is None:
            return await super().execute_fn(fn)
        key = f"pimainteno-fleet:{self.name}:{self.generation}"
        prefix = f"pimainteno-fleet:{self.name}:"

        def in_thread() -> Any:
            conn = getattr(connections, key, None)
            if conn is None:
                for old in [k for k in vars(connections) if k.startswith(prefix)]:
                    getattr(connections, old).close()
                    delattr(connections, old)
                conn = self.connect()
                self.ds._prepare_connection(conn, self.name)
                setattr(connections, key, conn)
            return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self.ds.executor, in_thread)


def swap(ds: Any, name: str, db: Database) -> None:
    """Serve `db` as `name` in one assignment. (`add_database` would call it `name_2` while `name` exists,
    and remove-then-add leaves a moment with no such database.)"""
    db.name = db.route = name
    databases = ds.databases.copy()
    databases[name] = db
    ds.databases = databases


@dataclass
class Fleet:
    replicate: ReplicateConfig
    cache_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    views: dict[str, HostView] = field(default_factory=dict)
    generation: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    refreshed: threading.Event = field(default_factory=threading.Event)  # set after each full pass

    def refresh_once(self, ds: Any) -> None:
        """One pass over the fleet: restore what changed (a few hosts at once), swap it in, drop retired hosts."""
        try:
            hosts = fleet_restore.list_hosts(self.replicate)
        except PimaintenoError as e:  # keep every host and its last copy, and say why nothing is fresh
            if not self.refreshed.is_set() or any(v.problem != str(e) for v in self.views.values()):
                log.warning("fleet: %s", e)
            self.views = {h: replace(v, problem=str(e)) for h, v in self.views.items()}
            self.refreshed.set()
            return
        before = {h: self.views.get(h, HostView(h)) for h in hosts}
        with ThreadPoolExecutor(max_workers=RESTORE_WORKERS, thread_name_prefix="pimainteno-restore") as pool:
            done = pool.map(
                lambda v: fleet_restore.refresh(self.replicate, v, self.cache_dir, self.env), before.values()
            )
            for old, after in zip(before.values(), done, strict=True):
                host = after.name
                if after.snapshot is not None and after.snapshot != old.snapshot:
                    self.generation += 1
                    swap(ds, host, Snapshot(ds, after.snapshot, self.generation))
                    fleet_restore.discard_old(self.cache_dir, host, after.snapshot)
                    log.debug("fleet: %s restored at txid %s", host, after.txid)
                elif after.problem and after.problem != old.problem:
                    log.warning("fleet: %s: %s", host, after.problem)
                self.views[host] = after
        for gone in set(self.views) - set(hosts):  # retired: its replica directory was deleted
            del self.views[gone]
            if gone in ds.databases:
                ds.remove_database(gone)
            fleet_restore.forget(self.cache_dir, gone)
            log.info("fleet: %s retired (no replica any more)", gone)
        self.refreshed.set()

    def run(self, ds: Any) -> None:
        while not self.stop.is_set():
            try:
                self.refresh_once(ds)
            except Exception:  # one bad pass must not end the refresher; the next one may work
                log.exception("fleet: refresh failed")
            self.stop.wait(self.replicate.interval)


_fleets: weakref.WeakKeyDictionary[Any, Fleet] = weakref.WeakKeyDictionary()


def attach(ds: Any, fleet: Fleet) -> threading.Thread:
    """Serve this fleet from this Datasette and start its refresher thread."""
    _fleets[ds] = fleet
    thread = threading.Thread(target=fleet.run, args=(ds,), name="pimainteno-fleet", daemon=True)
    thread.start()
    return thread


# --- the page's data -------------------------------------------------------------------------------


def _one(conn: sqlite3.Connection, sql: str, params: list[Any]) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def collect(conn: sqlite3.Connection, since: str) -> list[dict[str, Any]]:
    """Per project: last run, open failures, proposals waiting, last push, model use since `since`."""
    names = [r[0] for r in conn.execute("SELECT name FROM projects UNION SELECT DISTINCT project FROM runs ORDER BY 1")]
    out = []
    for name in names:
        run = conn.execute(
            "SELECT id, status, started_at FROM runs WHERE project = ? ORDER BY started_at DESC, id DESC LIMIT 1",
            [name],
        ).fetchone()
        last_ok = _one(conn, "SELECT max(started_at) FROM runs WHERE project = ? AND status = 'ok'", [name])
        calls, tokens = conn.execute(
            "SELECT count(*), sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) FROM llm_calls "
            "WHERE project = ? AND started_at >= ?",
            [name, since],
        ).fetchone()
        out.append(
            {
                "name": name,
                "last_run": {"id": run[0], "status": run[1], "started_at": run[2]} if run else None,
                # open: detected after the project's last run that went all the way through (ok)
                "open_failures": _one(
                    conn, "SELECT count(*) FROM failures WHERE project = ? AND detected_at > ?", [name, last_ok or ""]
                ),
                "waiting": _one(
                    conn, "SELECT count(*) FROM proposals WHERE project = ? AND status = 'proposed'", [name]
                ),
                "last_push": _one(conn, "SELECT max(pushed_at) FROM commits WHERE project = ?", [name]),
                "calls_24h": calls,
                "tokens_24h": tokens or 0,
            }
        )
    return out


def _links(ds: Any, host: str, p: dict[str, Any], since: str) -> dict[str, str]:
    def table(name: str, **query: str) -> str:
        return ds.urls.table(host, name) + "?" + urlencode({"project": p["name"], **query})

    run = p["last_run"]
    return {
        "runs": table("runs", _sort_desc="started_at"),
        "last_run": ds.urls.row(host, "runs", str(run["id"])) if run else "",
        "failures": table("failures", _sort_desc="detected_at"),
        "waiting": table("proposals", status="proposed"),
        "pushes": table("commits", _sort_desc="pushed_at", pushed_at__notblank="1"),
        "calls": table("llm_calls", started_at__gte=since),
    }


async def fleet_data(ds: Any) -> dict[str, Any]:
    fleet = _fleets.get(ds)
    if fleet is None:
        return {"generated_at": fleet_restore.now(), "url": None, "hosts": []}
    at = datetime.now(UTC)
    since = (at - timedelta(hours=24)).isoformat(timespec="seconds").replace("+00:00", "Z")
    hosts = []
    for name, view in sorted(dict(fleet.views).items()):  # as of the refresher's last pass
        state, detail = fleet_restore.condition(view, fleet.replicate.interval, at)
        projects: list[dict[str, Any]] = []
        db = ds.databases.get(name)
        if view.snapshot is not None and db is not None:
            try:
                projects = await db.execute_fn(lambda conn: collect(conn, since))
            except sqlite3.Error as e:
                state, detail = "broken", f"cannot read its copy: {e}"
            for p in projects:
                p["links"] = _links(ds, name, p, since)
        data_at = view.heartbeat or view.replica_newest
        hosts.append(
            {
                "name": name,
                "state": state,
                "detail": detail,
                "data_at": data_at,
                "data_age_s": fleet_restore.age(data_at, at),
                "restored_at": view.restored_at,
                "txid": view.txid,
                "web_url": view.web_url,
                "database_url": ds.urls.database(name) if db is not None and view.snapshot else None,
                "projects": projects,
            }
        )
    return {"generated_at": fleet_restore.now(), "url": fleet_mod.public_url(fleet.replicate.url), "hosts": hosts}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


# --- routes ----------------------------------------------------------------------------------------


async def _refused(ds: Any, request: Any) -> Response | None:
    try:
        await ds.ensure_permissions(request.actor, ["view-instance"])
    except Forbidden as e:
        return Response.text(str(e.args[0]), status=403)
    return None


async def fleet_page(datasette: Any, request: Any) -> Response:
    refused = await _refused(datasette, request)
    if refused:
        return refused
    data = await fleet_data(datasette)
    for h in data["hosts"]:
        h["age"] = _ago(h["data_age_s"])
    html = await datasette.render_template("pimainteno_fleet.html", data, request=request, view_name="pimainteno-fleet")
    return Response.html(html, headers=dict(NO_STORE))


async def fleet_json(datasette: Any, request: Any) -> Response:
    refused = await _refused(datasette, request)
    if refused:
        return refused
    response = Response.json(await fleet_data(datasette), default=str)
    response.headers.update(NO_STORE)
    return response


async def home(datasette: Any, request: Any) -> Response:
    return Response.redirect(datasette.urls.path("/-/fleet"))


def is_fleet(datasette: Any) -> bool:
    # Routes are gathered while Datasette is constructed (for ds.client), before attach(): so the
    # plugin configuration says "this is the fleet", and attach() supplies the fleet later.
    return bool((datasette.plugin_config(PLUGIN) or {}).get("fleet"))


@hookimpl
def register_routes(datasette: Any) -> list[tuple[str, Any]]:
    if not is_fleet(datasette):
        return []
    # Registered after the host plugin, so these come first: `/` is the fleet, not one host's overview.
    return [(r"^/$", home), (r"^/-/fleet$", fleet_page), (r"^/-/fleet\.json$", fleet_json)]


@hookimpl
def menu_links(datasette: Any, actor: Any, request: Any) -> list[dict[str, str]]:
    if not is_fleet(datasette):
        return []
    return [{"href": datasette.urls.path("/-/fleet"), "label": "pimainteno fleet"}]


def register() -> None:
    """Add this module to Datasette's plugins (once); the host plugin too, for titles and cell rendering."""
    import sys

    from datasette.plugins import pm

    from pimainteno.dashboard.plugin import register as register_host_plugin

    register_host_plugin()
    module = sys.modules[__name__]
    if not pm.is_registered(module):
        pm.register(module, name=PLUGIN)
