"""The Datasette plugin (entry point `datasette: pimainteno`): hooks only, the work is elsewhere.

- asgi_wrapper: a wrong Bearer token is 403, no filter or facet on free text, secrets scrubbed (guard.py).
- register_routes: the overview at `/`, the JSON API under `/api/`, the POSTs that enqueue.
- permission_allowed: `pimainteno-run` for root, the Bearer token, and the config's `[web] allow`.
- actor_from_request: `Authorization: Bearer <[web] token or PIMAINTENO_WEB_TOKEN>`.
- render_cell: coloured diffs, journals and steps on table pages; secrets redacted.
- get_metadata: titles and descriptions, even for a plain `datasette pimainteno.db`.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from datasette import hookimpl
from datasette.utils import actor_matches_allow
from datasette.utils.asgi import asgi_static
from jinja2 import ChoiceLoader, FileSystemLoader
from markupsafe import Markup, escape

from pimainteno.dashboard import guard, metadata, render, routes, runtime

HERE = resources.files("pimainteno.dashboard")
TEMPLATES = str(HERE / "templates")
STATIC = str(HERE / "static")
CSS_URL = "/-/pimainteno/static/pimainteno.css"


@hookimpl
def asgi_wrapper(datasette: Any) -> Any:
    return lambda app: guard.wrap(datasette, app)


@hookimpl
def register_routes(datasette: Any) -> list[tuple[str, Any]]:
    return [*routes.ROUTES, (r"^/-/pimainteno/static/(?P<path>.*)$", asgi_static(STATIC))]


@hookimpl
def prepare_jinja2_environment(env: Any, datasette: Any) -> None:
    # Our module is not a package, so Datasette does not find templates/ by itself.
    env.loader = ChoiceLoader([FileSystemLoader(TEMPLATES), env.loader])


@hookimpl
def actor_from_request(datasette: Any, request: Any) -> dict[str, Any] | None:
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    return runtime.actor_for_bearer(datasette, authorization)


@hookimpl
def permission_allowed(datasette: Any, actor: dict[str, Any] | None, action: str, resource: Any) -> bool | None:
    if action != routes.RUN_PERMISSION:
        return None
    if actor and (actor.get("id") == "root" or actor.get("pimainteno_token") is True):
        return True
    cfg = runtime.load(datasette).config
    allow = cfg.web.allow if cfg else None
    if allow is not None and actor_matches_allow(actor, allow):
        return True
    return None


@hookimpl
def get_metadata(datasette: Any, key: str, database: str | None, table: str | None) -> dict[str, Any]:
    names = [n for n in list(datasette.databases) if n != "_internal" and runtime.is_pimainteno_db(datasette, n)]
    if not names:
        return {}
    return {
        "title": metadata.TITLE,
        "description": metadata.DESCRIPTION,
        "databases": {name: metadata.database_metadata() for name in names},
    }


@hookimpl
def render_cell(row: Any, value: Any, column: str, table: str, database: str, datasette: Any) -> Markup | None:
    if not isinstance(value, str) or not runtime.is_pimainteno_db(datasette, database):
        return None
    secrets = runtime.secrets(datasette)
    if secrets and any(s in value for s in secrets):
        value = render.redact(value, secrets)
        shown: Markup | None = Markup(escape(value))
    else:
        shown = None
    if (table, column) == ("proposals", "diff"):
        return render.diff_html(value, max_lines=None)
    if (table, column) in (("failures", "journal"), ("proposals", "test_output")):
        return render.pre(value)
    if (table, column) == ("runs", "steps"):
        return render.steps_html(value)
    return shown


@hookimpl
def menu_links(datasette: Any, actor: dict[str, Any] | None, request: Any) -> list[dict[str, str]]:
    links = [{"href": datasette.urls.path("/"), "label": "pimainteno overview"}]
    name = runtime.database_name(datasette)
    if name:
        links.append({"href": datasette.urls.database(name), "label": "pimainteno tables"})
    return links


@hookimpl
def extra_css_urls(template: str, database: str | None, table: str | None, datasette: Any) -> list[str]:
    return [CSS_URL]


def register() -> None:
    """Register this plugin with Datasette unless its entry point already did (e.g. not installed)."""
    import sys

    from datasette.plugins import pm

    module = sys.modules[__name__]
    if pm.get_plugin("pimainteno") is None and not pm.is_registered(module):
        pm.register(module, name="pimainteno")
