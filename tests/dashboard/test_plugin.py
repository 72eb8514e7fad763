"""The plugin through Datasette's own test client (ds.client): permissions, CSRF, Bearer, escaping."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from pimainteno import config
from pimainteno.commands.dashboard import SETTINGS, make_datasette, signing_secret
from tests.dashboard.seed import API_KEY, TOKEN, pending, seed, write_config

pytestmark = pytest.mark.anyio
SECRET = "s" * 64


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Site:
    def __init__(self, tmp_path: Path, *, mode: str = "propose", extra: str = "", with_config: bool = True):
        self.config_path = write_config(tmp_path, mode=mode, extra=extra)
        self.db_path = seed(self.config_path)
        self.queue_dir = config.load(self.config_path).queue_dir
        self.ds = make_datasette(self.db_path, self.config_path if with_config else None, SECRET)

    def cookie(self, actor_id: str = "root") -> dict[str, str]:
        return {"ds_actor": self.ds.sign({"a": {"id": actor_id}}, "actor")}

    async def csrf(self, cookies: dict[str, str]) -> dict[str, str]:
        """Load the overview as that actor; returns its cookies plus ds_csrftoken and the form's token."""
        page = await self.ds.client.get("/", cookies=cookies)
        assert page.status_code == 200
        form_token = re.search(r'name="csrftoken" value="([^"]+)"', page.text)
        assert form_token, "the overview has no form with a CSRF token"
        return {**cookies, "ds_csrftoken": page.cookies["ds_csrftoken"], "form": form_token.group(1)}

    async def post_as(self, path: str, actor_id: str = "root") -> Any:
        cookies = await self.csrf(self.cookie(actor_id))
        token = cookies.pop("form")
        return await self.ds.client.post(path, data={"csrftoken": token}, cookies=cookies)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.delenv("PIMAINTENO_WEB_TOKEN", raising=False)
    return Site(tmp_path)


async def test_anonymous_post_is_forbidden_and_queues_nothing(site: Site) -> None:
    response = await site.ds.client.post("/api/projects/app/run")
    assert response.status_code == 403
    assert "needs the pimainteno-run permission" in response.text
    assert pending(site.queue_dir) == []
    page = await site.ds.client.get("/")
    assert "Run now" not in page.text and "Log in with the root link" in page.text


async def test_root_without_the_csrf_token_is_forbidden(site: Site) -> None:
    response = await site.ds.client.post("/api/projects/app/run", data={"reason": "x"}, cookies=site.cookie())
    assert response.status_code == 403
    assert "form-urlencoded POST field did not match cookie" in response.text
    assert pending(site.queue_dir) == []


async def test_root_with_the_csrf_token_queues_a_run_and_the_page_says_so(site: Site) -> None:
    response = await site.post_as("/api/projects/app/run")
    assert response.status_code == 302 and response.headers["location"] == "/#project-app"
    [trigger] = pending(site.queue_dir)
    assert (trigger["project"], trigger["kind"], trigger["source"]) == ("app", "run", "dashboard")
    assert trigger["reason"] == "Run on the dashboard by root"
    page = await site.ds.client.get("/", cookies={**site.cookie(), "ds_messages": response.cookies["ds_messages"]})
    assert "Run for app queued; it shows up below once the queue has run it." in page.text
    assert "Queued: run from dashboard" in page.text
    again = await site.post_as("/api/projects/app/run")
    assert again.status_code == 302 and len(pending(site.queue_dir)) == 1  # merged into the waiting one


async def test_bearer_token_queues_and_a_wrong_one_is_forbidden(site: Site) -> None:
    wrong = await site.ds.client.post("/api/projects/app/run", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["ok"] is False
    assert pending(site.queue_dir) == []
    right = await site.ds.client.post(
        "/api/projects/app/run", json={"reason": "deploy hook"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert right.status_code == 202
    body = right.json()
    assert body["ok"] is True and body["trigger"] == "app.run.json" and body["merged"] is False
    [trigger] = pending(site.queue_dir)
    assert trigger["reason"] == "deploy hook" and trigger["source"] == "dashboard"


async def test_bearer_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIMAINTENO_WEB_TOKEN", "env-token-0123456789")
    s = Site(tmp_path)
    response = await s.ds.client.post("/api/projects/app/run", headers={"Authorization": "Bearer env-token-0123456789"})
    assert response.status_code == 202 and len(pending(s.queue_dir)) == 1


async def test_unknown_project_is_rejected_with_a_clear_message(site: Site) -> None:
    response = await site.ds.client.post("/api/projects/nope/run", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown project 'nope' (known: app)"
    browser = await site.post_as("/api/projects/nope/run")
    assert browser.status_code == 404 and "unknown project &#39;nope&#39; (known: app)" in browser.text
    assert pending(site.queue_dir) == []


async def test_get_on_a_post_route_is_refused(site: Site) -> None:
    response = await site.ds.client.get("/api/projects/app/run")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_approve_and_reject_enqueue_with_the_proposal(site: Site) -> None:
    page = await site.ds.client.get("/", cookies=site.cookie())
    assert "Waiting for approval" in page.text and 'action="/api/proposals/2/approve"' in page.text
    assert (await site.post_as("/api/proposals/2/approve")).status_code == 302
    # Approve and reject are exclusive: the one queued first stands.
    both = await site.ds.client.post("/api/proposals/2/reject", headers={"Authorization": f"Bearer {TOKEN}"})
    assert both.status_code == 409 and both.json()["error"] == (
        "proposal #2 already has an approval queued; approve and reject are exclusive"
    )
    kinds = {(t["kind"], t["proposal_id"]) for t in pending(site.queue_dir)}
    assert kinds == {("apply", 2)}
    done = await site.ds.client.post("/api/proposals/1/approve", headers={"Authorization": f"Bearer {TOKEN}"})
    assert done.status_code == 409 and done.json()["error"] == "proposal #1 is committed, not waiting for approval"
    missing = await site.ds.client.post("/api/proposals/99/reject", headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 404 and missing.json()["error"] == "no proposal #99"


async def test_no_approval_buttons_outside_propose_mode(tmp_path: Path) -> None:
    s = Site(tmp_path, mode="push")
    page = await s.ds.client.get("/", cookies=s.cookie())
    assert "Waiting for approval" not in page.text and "/approve" not in page.text
    assert "Run now" in page.text


async def test_everything_from_a_model_or_a_repository_is_escaped(site: Site) -> None:
    page = (await site.ds.client.get("/")).text
    assert "&lt;script&gt;alert(&#39;summary&#39;)&lt;/script&gt;" in page
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>bold?</b>" not in page
    assert "<strong>service</strong>" in page and "<code>make test</code>" in page  # the markdown subset
    assert '<span class="pim-add">+print(&#39;&lt;script&gt;alert(2)&lt;/script&gt;&#39;)</span>' in page
    assert '<span class="pim-del">-print(&#39;&lt;old&gt;&#39;)</span>' in page
    assert "&lt;img src=x onerror=alert(&#39;journal&#39;)&gt;" in page
    assert "Fix the &lt;greeting&gt; output" in page


async def test_overview_shows_services_runs_steps_commits_and_calls(site: Site) -> None:
    page = (await site.ds.client.get("/")).text
    for text in ("scheduler.status", "ok: next run 03:00", "systemd.status", "systemd.last_checked",
                 "pending trigger", 'id="run-1"', "propose", "tests passed", "bbbbbbbbbbbb", "origin/main",
                 "exit-code", "1200 / 300", "1 model call, 1 failed", "1 fixer run, 0 failed"):  # fmt: skip
        assert text in page, text


async def test_secrets_never_appear(site: Site) -> None:
    for path in ("/", "/pimainteno/llm_calls", "/api/status", "/-/metadata.json", "/-/plugins.json", "/-/settings"):
        response = await site.ds.client.get(path, cookies=site.cookie())
        assert response.status_code == 200, path
        assert API_KEY not in response.text and TOKEN not in response.text, path
    assert "401 for key [redacted]" in (await site.ds.client.get("/")).text


async def test_table_pages_render_diffs_and_hide_internal_tables(site: Site) -> None:
    proposals = (await site.ds.client.get("/pimainteno/proposals")).text
    assert '<pre class="pim-diff">' in proposals and "pim-add" in proposals and "<script>alert" not in proposals
    assert "Patches proposed by a model or a fixer" in proposals  # the table's description
    assert "/-/pimainteno/static/pimainteno.css" in proposals
    css = await site.ds.client.get("/-/pimainteno/static/pimainteno.css")
    assert css.status_code == 200 and ".pim-add" in css.text
    database = (await site.ds.client.get("/pimainteno.json")).json()
    hidden = {t["name"] for t in database["tables"] if t["hidden"]}
    assert "_sqlite_migrations" in hidden
    runs = (await site.ds.client.get("/pimainteno/runs.json")).json()
    assert runs["human_description_en"] == "sorted by started_at descending"


async def test_arbitrary_sql_only_for_root(site: Site) -> None:
    anonymous = await site.ds.client.get("/pimainteno.json?sql=select+1+as+one")
    assert anonymous.status_code == 403
    root = await site.ds.client.get("/pimainteno.json?sql=select+1+as+one&_shape=array", cookies=site.cookie())
    assert root.status_code == 200 and root.json() == [{"one": 1}]


async def test_settings_and_seed_api(site: Site) -> None:
    settings = (await site.ds.client.get("/-/settings.json")).json()
    assert settings["default_cache_ttl"] == SETTINGS["default_cache_ttl"] == 0 and settings["suggest_facets"] is False
    status = (await site.ds.client.get("/api/status")).json()
    assert status["configured"] is True and status["heartbeats"]["scheduler.status"]["value"] == "ok: next run 03:00"
    assert status["queue"] == {"known": True, "pending": 0, "more": False, "items": []}
    assert status["runs"][0]["id"] == 1
    projects = (await site.ds.client.get("/api/projects")).json()
    assert [(p["name"], p["mode"], p["configured"], p["last_run"]["status"]) for p in projects] == [
        ("app", "propose", True, "ok")
    ]
    summary = (await site.ds.client.get("/api/projects/app/summary")).json()
    assert summary["project"] == "app" and summary["head"] == "a" * 40 and summary["text"].startswith("# App")
    unknown = await site.ds.client.get("/api/projects/nope/summary")
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown project 'nope'"


async def test_allow_block_grants_the_run_permission(tmp_path: Path) -> None:
    s = Site(tmp_path, extra='allow = { id = ["alice"] }\n')
    assert (await s.post_as("/api/projects/app/run", "alice")).status_code == 302
    page = await s.ds.client.get("/", cookies=s.cookie("bob"))
    assert "Run now" not in page.text
    bob = await s.ds.client.post("/api/projects/app/run", cookies=s.cookie("bob"), headers={"x-csrftoken": "nope"})
    assert bob.status_code == 403 and len(pending(s.queue_dir)) == 1


async def test_without_a_config_the_overview_renders_and_posts_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIMAINTENO_CONFIG")
    s = Site(tmp_path, with_config=False)
    page = await s.ds.client.get("/", cookies=s.cookie())
    assert (
        page.status_code == 200 and 'id="project-app"' in page.text and "A small <strong>service</strong>" in page.text
    )
    assert "no pimainteno configuration is known to this dashboard" in page.text and "Run now" not in page.text
    csrf = page.cookies["ds_csrftoken"]  # set by the page's log-out form
    response = await s.ds.client.post(
        "/api/projects/app/run", cookies={**s.cookie(), "ds_csrftoken": csrf}, headers={"x-csrftoken": csrf}
    )
    assert response.status_code == 503
    assert "no pimainteno configuration is known to this dashboard" in response.text
    assert pending(s.queue_dir) == []


async def test_plain_datasette_gets_the_metadata_from_the_plugin(tmp_path: Path) -> None:
    from datasette.app import Datasette

    db_path = seed(write_config(tmp_path))
    ds = Datasette([str(db_path)])
    runs = await ds.client.get("/pimainteno/runs")
    assert "One row per run of the chain" in runs.text
    assert (await ds.client.get("/pimainteno.json?sql=select+1")).status_code == 403
    assert (await ds.client.get("/")).status_code == 200


def test_signing_secret_is_created_once_and_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = signing_secret(state)
    assert len(first) == 64 and signing_secret(state) == first
    assert stat.S_IMODE(os.stat(state / "dashboard-secret").st_mode) == 0o600
    os.chmod(state / "dashboard-secret", 0o644)
    assert signing_secret(state) == first and stat.S_IMODE(os.stat(state / "dashboard-secret").st_mode) == 0o600


async def test_a_refused_page_is_html_and_a_refused_api_call_is_json(tmp_path: Path) -> None:
    from datasette.app import Datasette

    from pimainteno.dashboard import metadata

    db_path = seed(write_config(tmp_path))
    ds = Datasette([str(db_path)], metadata={**metadata.build("pimainteno"), "allow": {"id": "root"}})
    page = await ds.client.get("/")
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    api = await ds.client.get("/api/projects")
    assert api.status_code == 403 and api.json()["ok"] is False
    root = await ds.client.get("/api/projects", cookies={"ds_actor": ds.sign({"a": {"id": "root"}}, "actor")})
    assert root.status_code == 200 and root.json()[0]["name"] == "app"


def test_prepare_binds_loopback_keeps_the_secret_and_refuses_a_busy_port(tmp_path: Path) -> None:
    import socket

    from pimainteno.app import App
    from pimainteno.commands.dashboard import prepare
    from pimainteno.errors import ToolError

    config_path = write_config(tmp_path)
    prepared = prepare(App(str(config_path)), port=0)
    try:
        host, port = prepared.sock.getsockname()
        assert host == "127.0.0.1" and prepared.url == f"http://127.0.0.1:{port}/"
        assert prepared.login_url == f"http://127.0.0.1:{port}/-/auth-token?token={prepared.datasette._root_token}"
        assert prepared.datasette._secret == signing_secret(tmp_path / "state")
        assert prepared.datasette.plugin_config("pimainteno")["config"] == str(config_path.resolve())
        assert prepared.datasette.databases["pimainteno"].is_mutable  # never --immutable
    finally:
        prepared.sock.close()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(ToolError, match=f"cannot listen on 127.0.0.1:{port}: .*; pass another --port"):
            prepare(App(str(config_path)), port=port)


async def test_a_diverged_project_shows_a_badge_with_the_reason_and_since_when(tmp_path: Path) -> None:
    from pimainteno.app import App
    from pimainteno.pipeline import pending as pending_pushes

    site = Site(tmp_path)
    app = App(str(site.config_path))
    project = app.config.project("app")
    why = "origin main moved on to 0123456789ab, which does not contain <b>fedcba987654</b>, and it conflicts"
    pending_pushes.mark(app, project, why)
    since = app.db.execute("SELECT updated_at FROM status WHERE key = 'diverged.app'").fetchone()[0]
    pending_pushes.mark(app, project, why)  # a later run finds it still diverged: the time stays the first one
    assert app.db.execute("SELECT updated_at FROM status WHERE key = 'diverged.app'").fetchone()[0] == since
    page = (await site.ds.client.get("/")).text
    badge = page[page.index('id="diverged-app"') : page.index("</p>", page.index('id="diverged-app"'))]
    assert "diverged</strong> since" in badge and since.replace("T", " ").split(".")[0] in badge
    assert "which does not contain &lt;b&gt;fedcba987654&lt;/b&gt;, and it conflicts" in badge
    assert page.index('id="diverged-app"') > page.index('id="project-app"')
    assert "<code>diverged.app</code>" not in page  # on its project, not among the other status keys
