"""Health probes against real servers and real processes on this machine."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pimainteno import health


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/hang":
            time.sleep(5)
        code = {"/ok": 200, "/moved": 302, "/broken": 500}.get(self.path, 404)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/elsewhere")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the probe gave up on /hang, as it should
            self.wfile.write(f"status {code}".encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_2xx_and_3xx_are_healthy_5xx_is_not(server: str) -> None:
    assert health.probe(f"{server}/ok", 2).ok
    moved = health.probe(f"{server}/moved", 2)
    assert moved.ok and "302" in moved.detail
    broken = health.probe(f"{server}/broken", 2)
    assert not broken.ok and "500" in broken.detail and broken.output == "status 500"


def test_http_that_hangs_is_a_failure_at_the_deadline(server: str) -> None:
    start = time.monotonic()
    result = health.probe(f"{server}/hang", 0.5)
    assert not result.ok
    assert time.monotonic() - start < 2.5


def test_http_nothing_listening() -> None:
    result = health.probe(f"http://127.0.0.1:{_free_port()}/", 1)
    assert not result.ok and "refused" in result.detail.lower()


def test_tcp_probe(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    assert health.probe(f"tcp://127.0.0.1:{port}", 1).ok
    closed = health.probe(f"tcp://127.0.0.1:{_free_port()}", 1)
    assert not closed.ok and "cannot connect" in closed.detail


def test_command_probe_and_its_deadline(tmp_path: Path) -> None:
    assert health.probe("true", 2, tmp_path).ok
    failed = health.probe("echo down; exit 3", 2, tmp_path)
    assert not failed.ok and "exited 3" in failed.detail and "down" in failed.output
    pidfile = tmp_path / "child.pid"
    start = time.monotonic()
    hung = health.probe(f"setsid sleep 30 & echo $! > {pidfile}; sleep 30", 0.5, tmp_path)
    assert not hung.ok and "timed out" in hung.detail
    assert time.monotonic() - start < 5
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:  # setsid put it in another session: the probe must still not leave it running
        os.kill(child, 9)
        pytest.fail("the probe left its child running")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("http://", "with a host"),
        ("tcp://localhost", "tcp://host:port"),
        ("tcp://:80", "tcp://host:port"),
        ("  ", "empty"),
    ],
)
def test_bad_specs_are_named(spec: str, expected: str) -> None:
    found = health.problem(spec)
    assert found is not None and expected in found


def test_good_specs() -> None:
    for spec in ("http://127.0.0.1:8080/health", "https://example.org", "tcp://db:5432", "curl -fsS localhost"):
        assert health.problem(spec) is None


def test_wait_healthy_needs_consecutive_passes(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    # fails on the first probe, passes from the second on
    cmd = f"n=$(cat {counter}); echo $((n+1)) > {counter}; [ $n -ge 1 ]"
    result = health.wait_healthy(cmd, passes=2, within=5, timeout=1, cwd=tmp_path, interval=0.05)
    assert result.ok and "2 in a row" in result.detail
    assert int(counter.read_text()) == 3
    never = health.wait_healthy("false", passes=1, within=0.3, timeout=1, cwd=tmp_path, interval=0.05)
    assert not never.ok


def test_prober_counts_consecutive_failures() -> None:
    prober = health.Prober()
    bad, good = health.Probe(False, "down"), health.Probe(True, "up")
    assert prober.due("app", 0)
    assert not prober.record("app", bad, 0, interval=30, failures=3)
    assert not prober.due("app", 29) and prober.due("app", 30)
    assert not prober.record("app", bad, 30, interval=30, failures=3)
    assert not prober.record("app", good, 60, interval=30, failures=3)  # a pass resets the streak
    assert not prober.record("app", bad, 90, interval=30, failures=3)
    assert not prober.record("app", bad, 120, interval=30, failures=3)
    assert prober.record("app", bad, 150, interval=30, failures=3)
    assert not prober.record("app", bad, 180, interval=30, failures=3)  # counting starts over


def test_the_watch_probe_thread_reports_a_failing_streak_once_and_only_that(server: str, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pimainteno.probing import ProbeThread

    def project(name: str, path: str) -> SimpleNamespace:
        return SimpleNamespace(name=name, health=f"{server}{path}", health_timeout=1.0, health_interval=0.1,
                               health_failures=3, path=tmp_path)  # fmt: skip

    thread = ProbeThread([project("sick", "/broken"), project("fine", "/ok")])
    thread.start()
    try:
        deadline = time.monotonic() + 10
        found: list = []
        while not found and time.monotonic() < deadline:
            found = thread.take()
            time.sleep(0.02)
    finally:
        thread.stop()
    (streak,) = found[:1]
    assert streak[0].name == "sick" and not streak[1].ok
    assert streak[1].detail == f"GET {server}/broken: 500" and streak[1].output == "status 500"
    assert all(p.name == "sick" for p, _ in found + thread.take())
    assert thread.prober.streaks["fine"].failures == 0 and thread.prober.streaks["fine"].last.ok
