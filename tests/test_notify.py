"""Notifications through apprise to a local HTTP receiver the test owns."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pimainteno import notify
from pimainteno.db import open_db

SECRET = "sk-test-0123456789abcdef"


class Receiver:
    def __init__(self, delay: float = 0.0, status: int = 200) -> None:
        self.posts: list[dict[str, Any]] = []
        self.delay, self.status = delay, status
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                outer.posts.append(json.loads(self.rfile.read(length)))
                time.sleep(outer.delay)
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.httpd.server_address[1]}/hook?token={SECRET}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _config(urls: list[str], events: tuple[str, ...] = notify.EVENTS, max_per_hour: int = 20,
            timeout: float = 5.0) -> Any:  # fmt: skip
    return SimpleNamespace(notify=SimpleNamespace(urls=urls, events=events, max_per_hour=max_per_hour,
                                                  timeout=timeout))  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> Any:
    return open_db(tmp_path / "n.db")


def _scrub(text: str) -> str:
    return text.replace(SECRET, "[redacted]")


def test_each_event_reaches_the_receiver_and_is_recorded(receiver: Receiver, db: Any) -> None:
    cfg = _config([receiver.url])
    for event in notify.EVENTS:
        sent = notify.notify(cfg, db, event, project="app", body=f"{event} happened; key {SECRET}", scrub=_scrub,
                             link="http://dash.example/app")  # fmt: skip
        assert [s.outcome for s in sent] == ["sent"]
    assert len(receiver.posts) == len(notify.EVENTS)
    first = receiver.posts[0]
    assert first["title"] == "pimainteno: app pushed a fix"
    assert "[redacted]" in first["message"] and SECRET not in first["message"]
    assert "http://dash.example/app" in first["message"]
    rows = list(db["notifications"].rows)
    assert {r["target"] for r in rows} == {"json"} and {r["outcome"] for r in rows} == {"sent"}
    assert SECRET not in json.dumps(rows)  # the URL's token is never stored


def test_unwanted_events_are_not_sent(receiver: Receiver, db: Any) -> None:
    cfg = _config([receiver.url], events=("rolled_back",))
    assert notify.notify(cfg, db, "pushed", project="app", body="x") == []
    assert receiver.posts == [] and db["notifications"].count == 0
    assert notify.wanted(cfg, ["pushed", "rolled_back"]) and not notify.wanted(cfg, ["pushed"])


def test_a_receiver_that_is_down_fails_quietly(db: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _config([f"json://127.0.0.1:{port}/hook"])
    sent = notify.notify(cfg, db, "failure", project="app", body="unit failed")
    assert [s.outcome for s in sent] == ["failed"]
    row = next(iter(db["notifications"].rows))
    assert row["outcome"] == "failed" and "json" in row["error"]


def test_a_slow_receiver_is_bounded_by_the_timeout(db: Any) -> None:
    slow = Receiver(delay=5)
    try:
        cfg = _config([slow.url], timeout=0.5)
        start = time.monotonic()
        sent = notify.notify(cfg, db, "pushed", project="app", body="x")
        assert time.monotonic() - start < 2
        assert [s.outcome for s in sent] == ["timeout"]
    finally:
        slow.close()


def test_a_receiver_that_refuses(db: Any) -> None:
    refusing = Receiver(status=500)
    try:
        sent = notify.notify(_config([refusing.url]), db, "pushed", project="app", body="x")
        assert [s.outcome for s in sent] == ["failed"] and "refused" in (sent[0].error or "")
    finally:
        refusing.close()


def test_a_flood_is_held_back_then_summarised(receiver: Receiver, db: Any) -> None:
    cfg = _config([receiver.url], max_per_hour=2)
    outcomes = [notify.notify(cfg, db, "failure", project="app", body=f"#{i}")[0].outcome for i in range(5)]
    assert outcomes == ["sent", "sent", "held", "held", "held"]
    assert len(receiver.posts) == 2
    # an hour later (rows aged by hand), the next one says how many were held
    db.execute("UPDATE notifications SET created_at = '2000-01-01T00:00:00.000Z' WHERE outcome = 'sent'")
    notify.notify(cfg, db, "failure", project="app", body="later")
    assert "3 more notification(s) were held back" in receiver.posts[-1]["message"]


def test_invalid_url_is_named_without_its_secrets() -> None:
    problem = notify.url_problem(f"nosuchscheme://user:{SECRET}@host/")
    assert problem is not None and "nosuchscheme" in problem and SECRET not in problem
    assert notify.url_problem("json://127.0.0.1:9/hook") is None
