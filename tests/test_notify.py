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


# --- the events a run and a failure send, through the real CLI -----------------------------------


def _configure_run(tmp_path: Path, url: str, *, mode: str = "push", command: list[str] | str | None = None) -> Path:
    from tests.commands.project import RUFF_FIX, configure

    extra = f'\n[llm.env]\n\n[notify]\nurls = ["{url}"]\ntimeout = 3\n\n[web]\nurl = "http://pi.local:8001"\n'
    repo = configure(tmp_path, mode=mode, command=command or RUFF_FIX, extra=extra)
    text = (tmp_path / "PiMainteno.toml").read_text().replace("[llm]\n", f'[llm]\napi_key = "{SECRET}"\n', 1)
    (tmp_path / "PiMainteno.toml").write_text(text.replace("\n[llm.env]\n", "\n"))
    return repo


def _rows(tmp_path: Path) -> list[tuple[str, str, str]]:
    d = open_db(tmp_path / "state" / "pimainteno.db")
    return [(r["event"], r["target"], r["outcome"]) for r in d.query("SELECT * FROM notifications ORDER BY id")]


def test_a_pushed_run_tells_once_with_the_commit_and_the_dashboard_link(receiver: Receiver, tmp_path: Path) -> None:
    from tests.conftest import run_cli, run_git

    repo = _configure_run(tmp_path, receiver.url)
    result = run_cli("run", "app")
    assert result.returncode == 0, result.stderr
    sha = run_git(repo, "rev-parse", "HEAD").strip()
    assert _rows(tmp_path) == [("pushed", "json", "sent")]
    (post,) = receiver.posts
    assert post["title"] == "pimainteno: app pushed a fix"
    assert f"run #1 pushed {sha[:12]}" in post["message"] and "refs/heads/main (proposal #1)" in post["message"]
    assert "http://pi.local:8001/pimainteno/runs/1" in post["message"]


def test_a_waiting_proposal_and_a_failed_run_are_told_with_the_secret_redacted(receiver: Receiver,
                                                                               tmp_path: Path) -> None:  # fmt: skip
    from tests.conftest import run_cli

    _configure_run(tmp_path, receiver.url, mode="propose")
    assert run_cli("run", "app").returncode == 0
    assert _rows(tmp_path) == [("proposal_waiting", "json", "sent")]
    assert "proposal #1 (proposed) waits for approval" in receiver.posts[-1]["message"]
    assert "http://pi.local:8001/pimainteno/proposals/1" in receiver.posts[-1]["message"]

    text = (tmp_path / "PiMainteno.toml").read_text()  # a remote that is not there: the push fails
    text = text.replace('mode = "propose"', f'mode = "push"\nremote = "/nonexistent/{SECRET}.git"')
    (tmp_path / "PiMainteno.toml").write_text(text)
    result = run_cli("run", "app", "--reason", "try again")
    assert result.returncode == 4, result.stderr
    assert _rows(tmp_path)[-1] == ("run_failed", "json", "sent")
    message = receiver.posts[-1]["message"]
    assert receiver.posts[-1]["title"] == "pimainteno: app a run failed" and "run #2 failed:" in message
    assert "/nonexistent/[redacted].git" in message and SECRET not in message


def test_a_receiver_that_is_down_does_not_fail_the_run(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _configure_run(tmp_path, f"json://127.0.0.1:{port}/hook")
    start = time.monotonic()
    result = run_cli("run", "app")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 60
    assert _rows(tmp_path) == [("pushed", "json", "failed")]
    assert "notification pushed to json:// failed" in result.stderr


def test_notify_test_sends_one_to_every_target_and_prints_each_outcome(receiver: Receiver, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"json://127.0.0.1:{s.getsockname()[1]}/hook"
    _configure_run(tmp_path, receiver.url)
    ok = run_cli("notify", "--test")
    assert (ok.returncode, ok.stdout) == (0, "json://: sent\n"), ok.stderr
    assert receiver.posts[-1]["title"] == "pimainteno: test notification"
    text = (tmp_path / "PiMainteno.toml").read_text().replace(f'urls = ["{receiver.url}"]',
                                                             f'urls = ["{receiver.url}", "{down}"]')  # fmt: skip
    (tmp_path / "PiMainteno.toml").write_text(text)
    both = run_cli("notify", "--test", "--json")
    assert both.returncode == 4
    assert [json.loads(line)["outcome"] for line in both.stdout.splitlines()] == ["sent", "failed"]
    assert SECRET not in both.stdout + both.stderr
    assert run_cli("notify").returncode == 2  # says what to send


def test_a_run_whose_proposal_went_stale_is_told_stale(receiver: Receiver, tmp_path: Path) -> None:
    # validate.py marks a proposal stale when it no longer applies at a moved HEAD; the run ends rejected
    from pimainteno import records
    from pimainteno.app import App
    from pimainteno.pipeline.request import RunOutcome

    _configure_run(tmp_path, receiver.url, mode="propose")
    app = App()
    proposal = records.add_proposal(app.db, project="app", diff="diff --git a/x b/x\n", base_head="0" * 40,
                                    files=["x"], added=1, removed=0, fingerprint=None)  # fmt: skip
    records.transition(app.db, proposal.id, records.ProposalStatus.STALE, actor="pimainteno",
                       reason="patch rejected: it does not apply to app at HEAD")  # fmt: skip
    outcome = RunOutcome("app", "rejected", 7, "patch rejected", proposal.id)
    assert [s.outcome for s in notify.about_run(app, outcome)] == ["sent"]
    assert _rows(tmp_path) == [("stale", "json", "sent")]
    assert receiver.posts[-1]["title"] == "pimainteno: app a proposal went stale"
    message = receiver.posts[-1]["message"]
    assert "run #7: proposal #1 no longer applies at HEAD: patch rejected: it does not apply to app at HEAD" in message
    assert "http://pi.local:8001/pimainteno/proposals/1" in message
    assert notify.about_run(app, RunOutcome("app", "nothing", 8)) == []  # not news


def test_a_failure_and_a_heal_given_up_are_told(receiver: Receiver, tmp_path: Path) -> None:
    from pimainteno.app import App
    from pimainteno.failures import record_failure
    from pimainteno.systemd import FailureEvent

    _configure_run(tmp_path, receiver.url)
    text = (tmp_path / "PiMainteno.toml").read_text()
    text = text.replace('name = "app"\n', 'name = "app"\nunit = "app.service"\n')
    (tmp_path / "PiMainteno.toml").write_text(
        "[systemd_monitor]\nheal_limit = 1\ncoalesce = 0  # one row per failure, as before coalescing\n\n" + text
    )
    app = App()

    def fail(invocation: str) -> str:
        event = FailureEvent(unit="app.service", active_state="failed", sub_state="failed", result="exit-code",
                             exit_code="exited", exit_status=3, invocation_id=invocation, detected_at=time.monotonic(),
                             detected_wall="2026-01-01T00:00:00.000")  # fmt: skip
        return record_failure(app, event, source="on-failure").heal

    assert [fail("a" * 32), fail("b" * 32), fail("b" * 32)] == ["queued", "gave_up", "gave_up"]
    assert [e for e, _, _ in _rows(tmp_path)] == ["failure", "heal_gave_up"]  # the duplicate is not told again
    assert "failure #1: app.service failed (exit-code, status 3); heal queued" in receiver.posts[0]["message"]
    assert receiver.posts[1]["title"] == "pimainteno: app gave up healing"
    assert "http://pi.local:8001/pimainteno/failures/2" in receiver.posts[1]["message"]


def test_a_project_that_diverges_is_told_once_not_on_every_run(receiver: Receiver, tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import run_cli, run_git

    repo = _configure_run(tmp_path, receiver.url)
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "remote.git"), str(other)], check=True)
    (other / "README.md").write_text("# rewritten upstream\n")
    run_git(other, "commit", "-qam", "upstream")
    run_git(other, "push", "-q", "origin", "HEAD:main")
    (repo / "LOCAL").write_text("the owner's own local commit\n")  # not pimainteno's: it cannot be replayed
    run_git(repo, "add", "LOCAL")
    run_git(repo, "commit", "-qm", "local work")
    run_cli("run", "app")  # commits the fix locally; its push is refused (not a fast-forward)
    assert [e for e, _, _ in _rows(tmp_path)].count("diverged") == 0
    run_cli("run", "app", "--reason", "again")  # push-pending finds the remote moved on: diverged
    run_cli("run", "app", "--reason", "once more")  # still diverged: nothing new to tell
    assert [r for r in _rows(tmp_path) if r[0] == "diverged"] == [("diverged", "json", "sent")]
    [told] = [p for p in receiver.posts if p["title"] == "pimainteno: app diverged from its remote"]
    assert told["message"].startswith("app is diverged from its remote: origin refs/heads/main moved on to ")
    assert "commits pimainteno did not make" in told["message"] and told["message"].endswith("clears the mark.")


def test_slow_targets_share_one_deadline(db: Any) -> None:
    slow = [Receiver(delay=5), Receiver(delay=5), Receiver(delay=5)]
    try:
        cfg = _config([r.url for r in slow], timeout=0.5)
        start = time.monotonic()
        sent = notify.notify(cfg, db, "pushed", project="app", body="x")
        assert time.monotonic() - start < 1.5  # not 3 × 0.5 s: every target waits within the same deadline
        assert [s.outcome for s in sent] == ["timeout", "timeout", "timeout"]
    finally:
        for r in slow:
            r.close()
