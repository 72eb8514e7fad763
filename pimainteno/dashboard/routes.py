"""The plugin's pages and endpoints: the overview, the seed's JSON API, and the POSTs that enqueue.

The web process only reads the database (Datasette's read-only connections) and only ever writes
trigger files into the queue: it never runs git, a model or systemctl, and never writes the database.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from datasette.utils.asgi import Forbidden, Response

from pimainteno.config import Config
from pimainteno.dashboard import overview, queries, runtime
from pimainteno.dashboard.render import redact
from pimainteno.errors import InputError
from pimainteno.queue import MAX_ID

RUN_PERMISSION = "pimainteno-run"
NO_STORE = {"Cache-Control": "no-store"}  # the pages change with every run


def _wants_json(request: Any) -> bool:
    """JSON for scripts; a page (or a redirect with a message) for a browser's form post."""
    if request.method in ("GET", "HEAD"):
        return "/api/" in request.path
    h = request.headers
    form = h.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
    return not form or bool(h.get("authorization")) or "application/json" in h.get("accept", "")


async def _fail(datasette: Any, request: Any, status: int, message: str) -> Response:
    if _wants_json(request):
        return Response.json({"ok": False, "error": message}, status=status)
    html = await datasette.render_template(
        "error.html", {"title": f"Error {status}", "error": message, "status": status}, request=request
    )
    return Response.html(html, status=status)


async def _read(datasette: Any, fn: Any) -> Any:
    name = runtime.database_name(datasette)
    if name is None:
        return None
    return await datasette.get_database(name).execute_fn(fn)


async def _visible(datasette: Any, request: Any) -> Response | None:
    """None when the actor may see the pimainteno database, else the refusal."""
    name = runtime.database_name(datasette)
    checks: list[Any] = [("view-database", name), "view-instance"] if name else ["view-instance"]
    try:
        await datasette.ensure_permissions(request.actor, checks)
    except Forbidden as e:
        return await _fail(datasette, request, 403, str(e.args[0]))
    return None


def _json(datasette: Any, data: Any, status: int = 200) -> Response:
    secrets = runtime.secrets(datasette)
    text = json.dumps(data, default=str)
    return Response(
        redact(text, secrets), status=status, content_type="application/json; charset=utf-8", headers=dict(NO_STORE)
    )


# --- pages ------------------------------------------------------------------------------------


async def overview_page(datasette: Any, request: Any) -> Response:
    refused = await _visible(datasette, request)
    if refused:
        return refused
    loaded = runtime.load(datasette)
    data = await _read(datasette, lambda conn: overview.collect(conn, loaded.config)) or overview.empty(loaded.config)
    can_run = await datasette.permission_allowed(request.actor, RUN_PERMISSION, default=False)
    context = overview.context(datasette, data, loaded, can_run)
    html = await datasette.render_template(
        "pimainteno_overview.html", context, request=request, view_name="pimainteno-overview"
    )
    return Response.html(redact(html, runtime.secrets(datasette)), headers=dict(NO_STORE))


# --- the seed's JSON API ----------------------------------------------------------------------


async def api_status(datasette: Any, request: Any) -> Response:
    refused = await _visible(datasette, request)
    if refused:
        return refused
    loaded = runtime.load(datasette)
    cfg = loaded.config
    found = await _read(
        datasette, lambda conn: {"heartbeats": queries.heartbeats(conn), "runs": queries.recent_runs(conn)}
    ) or {"heartbeats": {}, "runs": []}
    return _json(
        datasette,
        {
            "database": runtime.database_name(datasette),
            "configured": cfg is not None,
            "problem": loaded.problem,
            "scheduler": {"enabled": cfg.scheduler.enabled, "schedule": cfg.scheduler.schedule} if cfg else None,
            "systemd_monitor": {"enabled": cfg.monitor.enabled, "units": list(cfg.monitor.units)} if cfg else None,
            "queue": queries.queue(cfg.queue_dir if cfg else None).as_json(),
            **found,
        },
    )


async def api_projects(datasette: Any, request: Any) -> Response:
    refused = await _visible(datasette, request)
    if refused:
        return refused
    cfg = runtime.load(datasette).config

    def read(conn: Any) -> list[dict[str, Any]]:
        found = overview.merge_projects(cfg, queries.project_rows(conn))
        for p in found:
            p["last_run"] = queries.last_run(conn, p["name"])
        return found

    return _json(datasette, await _read(datasette, read) or overview.merge_projects(cfg, []))


async def api_summary(datasette: Any, request: Any) -> Response:
    refused = await _visible(datasette, request)
    if refused:
        return refused
    name = unquote(request.url_vars["project"])
    cfg = runtime.load(datasette).config

    def read(conn: Any) -> tuple[bool, dict[str, Any] | None]:
        known = any(p["name"] == name for p in overview.merge_projects(cfg, queries.project_rows(conn)))
        return known, queries.latest_summary(conn, name)

    known, summary = await _read(datasette, read) or (False, None)
    if not known:
        return _json(datasette, {"ok": False, "error": f"unknown project {name!r}"}, status=404)
    summary = summary or {"id": None, "head": None, "created_at": None, "provider": None, "text": None}
    return _json(datasette, {"project": name, **summary})


# --- POST: only enqueue -----------------------------------------------------------------------


async def _guard(datasette: Any, request: Any) -> Config | Response:
    """The configuration when this request may enqueue, else the refusal to send."""
    if request.method != "POST":
        return Response.json({"ok": False, "error": "use POST"}, status=405, headers={"Allow": "POST"})
    if not await datasette.permission_allowed(request.actor, RUN_PERMISSION, default=False):
        who = "anonymous visitors" if not request.actor else f"actor {request.actor.get('id')!r}"
        return await _fail(
            datasette,
            request,
            403,
            f"{who} may not queue work: it needs the {RUN_PERMISSION} permission "
            "(log in as root, use the Bearer token, or grant it in [web] allow)",
        )
    loaded = runtime.load(datasette)
    if loaded.config is None:
        return await _fail(datasette, request, 503, str(loaded.problem))
    return loaded.config


async def _reason(request: Any, default: str) -> str:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(await request.post_body() or b"{}")
        except ValueError:
            body = {}
        given = body.get("reason") if isinstance(body, dict) else None
    else:
        given = (await request.post_vars()).get("reason")
    text = " ".join(str(given).split())[:300] if given else ""
    return text or default


def _actor_id(request: Any) -> str:
    return str((request.actor or {}).get("id") or "someone")


async def _enqueue(
    datasette: Any, request: Any, cfg: Config, project: str, kind: str, message: str, **extra: Any
) -> Response:
    from pimainteno.queue import enqueue

    reason = await _reason(request, f"{message} on the dashboard by {_actor_id(request)}")
    try:
        path, merged = enqueue(cfg.queue_dir, project, kind=kind, source="dashboard", reason=reason, **extra)
    except InputError as e:  # e.g. approve and reject of one proposal both queued: the first stands
        return await _fail(datasette, request, 409, str(e))
    except Exception as e:  # noqa: BLE001 - the page must say why, whatever the queue raised
        return await _fail(datasette, request, 500, f"could not queue the {kind} for {project!r}: {e}")
    said = f"{message} for {project} queued" + (" (merged with one already waiting)" if merged else "")
    if _wants_json(request):
        payload = {"ok": True, "project": project, "kind": kind, "trigger": path.name, "merged": merged, **extra}
        return Response.json({**payload, "message": said}, status=202)
    datasette.add_message(request, said + "; it shows up below once the queue has run it.", datasette.INFO)
    return Response.redirect(datasette.urls.path("/") + f"#project-{project}")


async def run_now(datasette: Any, request: Any) -> Response:
    cfg = await _guard(datasette, request)
    if isinstance(cfg, Response):
        return cfg
    name = unquote(request.url_vars["project"])
    if name not in {p.name for p in cfg.projects}:
        known = ", ".join(p.name for p in cfg.projects) or "none configured"
        return await _fail(datasette, request, 404, f"unknown project {name!r} (known: {known})")
    return await _enqueue(datasette, request, cfg, name, "run", "Run")


async def _decide(datasette: Any, request: Any, kind: str, message: str) -> Response:
    cfg = await _guard(datasette, request)
    if isinstance(cfg, Response):
        return cfg
    proposal_id = int(request.url_vars["id"])
    if not 1 <= proposal_id <= MAX_ID:
        return await _fail(datasette, request, 400, f"proposal id {proposal_id} is out of range (1 to {MAX_ID})")
    found = await _read(datasette, lambda conn: queries.proposal(conn, proposal_id))
    if found is None:
        return await _fail(datasette, request, 404, f"no proposal #{proposal_id}")
    if found["project"] not in {p.name for p in cfg.projects}:
        return await _fail(
            datasette,
            request,
            404,
            f"proposal #{proposal_id} belongs to {found['project']!r}, not a configured project",
        )
    if found["status"] != "proposed":
        return await _fail(
            datasette, request, 409, f"proposal #{proposal_id} is {found['status']}, not waiting for approval"
        )
    return await _enqueue(
        datasette,
        request,
        cfg,
        found["project"],
        kind,
        f"{message} of proposal #{proposal_id}",
        proposal_id=proposal_id,
    )


async def approve(datasette: Any, request: Any) -> Response:
    return await _decide(datasette, request, "apply", "Approval")


async def reject(datasette: Any, request: Any) -> Response:
    return await _decide(datasette, request, "reject", "Rejection")


PROJECT = r"(?P<project>[^/]+)"
ROUTES = [
    (r"^/$", overview_page),
    (r"^/api/status$", api_status),
    (r"^/api/projects$", api_projects),
    (rf"^/api/projects/{PROJECT}/summary$", api_summary),
    (rf"^/api/projects/{PROJECT}/run$", run_now),
    (r"^/api/proposals/(?P<id>\d+)/approve$", approve),
    (r"^/api/proposals/(?P<id>\d+)/reject$", reject),
]
