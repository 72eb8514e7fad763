"""The dashboard's guards over real HTTP: a real `pimainteno dashboard` process (uvicorn + Datasette).

A wrong Bearer token beside root's cookie, out-of-range ids, and secrets through the JSON API,
exports, facets and filters.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pimainteno import config, db, records
from tests.dashboard.process import running_dashboard
from tests.dashboard.seed import API_KEY, TOKEN, pending, seed, write_config


class Server:
    def __init__(self, proc: subprocess.Popen[str], url: str, login: str, queue_dir: Path):
        self.proc, self.url, self.login, self.queue_dir = proc, url, login, queue_dir
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
        finally:
            conn.close()

    def root_cookie(self) -> str:
        """Follow the one-time login link as a browser would: its Set-Cookie is root's ds_actor."""
        status, headers, _ = self.request("GET", urlsplit(self.login)._replace(scheme="", netloc="").geturl())
        assert status == 302, status
        cookie = headers["set-cookie"].split(";", 1)[0]
        assert cookie.startswith("ds_actor=")
        return cookie


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config_path = write_config(tmp_path)
    database = seed(config_path)
    d = db.open_db(database)
    with db.transaction(d):
        records.insert(d, "runs", {"project": "app", "trigger": "cli", "started_at": records.now(), "status": "failed",
                              "error": f"provider said: bad key {API_KEY} (token {TOKEN})"})  # fmt: skip
    d.conn.close()
    with running_dashboard(config_path) as running:
        yield Server(running.proc, running.url, running.login, config.load(config_path).queue_dir)


def test_a_wrong_bearer_token_is_403_whatever_cookie_comes_with_it(server: Server) -> None:
    cookie = server.root_cookie()
    post = {"Content-Type": "application/json"}
    status, _, body = server.request(
        "POST", "/api/projects/app/run", {**post, "Cookie": cookie, "Authorization": "Bearer nope"}, b"{}"
    )
    assert status == 403 and json.loads(body)["ok"] is False
    status, _, _ = server.request("GET", "/pimainteno/runs.json", {"Cookie": cookie, "Authorization": "Bearer nope"})
    assert status == 403  # reading too: the request is refused, not demoted to anonymous
    assert pending(server.queue_dir) == []
    status, _, body = server.request(
        "POST", "/api/projects/app/run", {**post, "Cookie": cookie, "Authorization": f"Bearer {TOKEN}"}, b"{}"
    )
    assert status == 202 and json.loads(body)["ok"] is True
    assert [t["source"] for t in pending(server.queue_dir)] == ["dashboard"]


@pytest.mark.parametrize("pid", ["99999999999999999999999", "9223372036854775808"])
def test_an_out_of_range_proposal_id_is_400(server: Server, pid: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    for action in ("approve", "reject"):
        status, _, body = server.request("POST", f"/api/proposals/{pid}/{action}", auth, b"{}")
        assert status == 400, body
        assert json.loads(body) == {
            "ok": False,
            "error": f"proposal id {pid} is out of range (1 to 9223372036854775807)",
        }
    assert pending(server.queue_dir) == []
    status, _, _ = server.request("POST", "/api/proposals/9223372036854775807/approve", auth, b"{}")
    assert status == 404  # in range, just not there
    for query in (f"id__gt={pid}", f"run_id__lte=-{pid}0", f"_filter_column=id&_filter_op=gt&_filter_value={pid}"):
        status, _, body = server.request("GET", f"/pimainteno/proposals.json?{query}")
        assert status == 400 and "outside SQLite's integer range" in json.loads(body)["error"], (query, body)


def test_the_json_api_exports_and_row_pages_never_show_a_secret(server: Server) -> None:
    cookie = server.root_cookie()
    for path in ("/pimainteno/runs.json", "/pimainteno/runs.json?_shape=array", "/pimainteno/runs.csv",
                 "/pimainteno/runs", "/pimainteno/runs/2.json", "/pimainteno/llm_calls.json", "/pimainteno/runs.json?_stream=on",
                 "/pimainteno.json?sql=select+error+from+runs+union+all+select+error+from+llm_calls"):  # fmt: skip
        for headers in ({}, {"Cookie": cookie}):
            status, _, body = server.request("GET", path, headers)
            assert status in (200, 403), (path, status)
            assert API_KEY not in body and TOKEN not in body, path
    _, _, body = server.request("GET", "/pimainteno/runs.json?_shape=array")
    assert "provider said: bad key [redacted] (token [redacted])" in [r["error"] for r in json.loads(body)]


@pytest.mark.parametrize(
    "query",
    [
        "_facet=error",
        "error__contains=sk-",
        "error__contains=zzz-no-match",  # refused the same way: the answer does not depend on a secret
        "error__startswith=provider+said%3A+bad+key+sk",
        "error__gt=provider+said",
        "error=x",
        "_sort=error",
        "_sort_desc=error",
        "_where=error+like+'%25sk-%25'",
        "_search=sk",
        "_facet_array=steps",
        "_filter_column=journal&_filter_op=contains&_filter_value=sk",
    ],
)
def test_facets_and_filters_on_free_text_are_refused_and_no_oracle(server: Server, query: str) -> None:
    for table in ("runs", "llm_calls"):
        for suffix in (".json", ""):
            status, _, body = server.request("GET", f"/pimainteno/{table}{suffix}?{query}")
            assert status == 400, (table, query, body[:200])
            assert API_KEY not in body and TOKEN not in body
            assert "not offered" in json.loads(body)["error"]


def test_filters_on_ids_names_and_statuses_still_work(server: Server) -> None:
    status, _, body = server.request("GET", "/pimainteno/runs.json?_shape=array&status=failed&_facet=project")
    assert status == 200
    [row] = json.loads(body)
    assert row["status"] == "failed" and "[redacted]" in row["error"]
    status, _, body = server.request("GET", "/pimainteno/runs.json?id__gte=1&_sort_desc=started_at")
    assert status == 200 and API_KEY not in body


@pytest.mark.parametrize("cut", range(1, 40))
def test_a_secret_split_across_body_chunks_is_still_scrubbed(cut: int) -> None:
    import asyncio

    from pimainteno.dashboard.guard import _scrubbing, spellings

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    body = f'{{"error": "key {API_KEY} and &amp; {API_KEY}"}}'.encode()
    scrubbing = _scrubbing(send, spellings([API_KEY]))

    async def respond() -> None:
        await scrubbing({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"99")]})
        await scrubbing({"type": "http.response.body", "body": body[:cut], "more_body": True})
        await scrubbing({"type": "http.response.body", "body": body[cut:], "more_body": False})

    asyncio.run(respond())
    assert sent[0]["headers"] == []  # the length changes: no stale Content-Length
    assert b"".join(m["body"] for m in sent[1:]) == b'{"error": "key [redacted] and &amp; [redacted]"}'


@pytest.mark.parametrize(("host", "shown"), [("0.0.0.0", None), ("127.0.0.1", "127.0.0.1"), ("localhost", "localhost")])
def test_the_login_link_names_the_host_the_dashboard_binds_to(tmp_path: Path, host: str, shown: str | None) -> None:
    import socket

    from pimainteno.app import App
    from pimainteno.commands.dashboard import prepare

    prepared = prepare(App(str(write_config(tmp_path))), host=host, port=0)
    try:
        bound, port = prepared.sock.getsockname()[:2]
        shown = shown or socket.gethostname()  # a wildcard bind: this machine's name, not 127.0.0.1
        assert bound == (host if host != "localhost" else "127.0.0.1")
        assert prepared.url == f"http://{shown}:{port}/"
        assert prepared.login_url.startswith(f"http://{shown}:{port}/-/auth-token?token=")
    finally:
        prepared.sock.close()
