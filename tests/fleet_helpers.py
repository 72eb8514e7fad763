"""Helpers for the fleet tests: background processes, simulated hosts, polling, the browser."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pimainteno import fleet_restore
from pimainteno.commands.demo import make_sample
from pimainteno.config import ReplicateConfig
from tests.conftest import REPO_ROOT, run_cli

PY = sys.executable
RUFF_FIX = [PY, "-m", "ruff", "check", "--fix", "--quiet", "--exit-zero", "."]
TESTS = [PY, "-m", "unittest", "discover", "-q"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")


class Procs:
    """Background processes that all die with the test (SIGTERM to the group, then SIGKILL)."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self.logs.mkdir(exist_ok=True)
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                [PY, "-m", "pimainteno", *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
        return proc.wait()

    def close(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                self.stop(proc, timeout=5)


def make_host(root: Path, n: int, extra: str = "") -> Path:
    """A host: its own state directory and a real project, run once for real (summarize → push).
    `extra`: more tables for its configuration (e.g. [replicate])."""
    root.mkdir(parents=True)
    repo, _ = make_sample(root)
    config = root / "PiMainteno.toml"
    config.write_text(
        f'[llm]\nprovider = "command"\ncommand = {json.dumps(RUFF_FIX)}\n\n'
        f"[state]\ndir = {json.dumps(str(root / 'state'))}\n\n"
        f'[[project]]\nname = "app-{n}"\npath = {json.dumps(str(repo))}\nbranch = "main"\n'
        f'test = {json.dumps(TESTS)}\nmode = "push"\nrestart = false\ntest_timeout = 60\n'
        # host 1's dashboard listens for other machines: the fleet page links to it
        + ('\n[web]\nhost = "0.0.0.0"\nport = 8011\n' if n == 1 else "")
        + (f"\n{extra}" if extra else "")
    )
    done = run_cli("--config", str(config), "run", f"app-{n}")
    assert done.returncode == 0, done.stderr
    return config


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as e:  # the server is not up yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def not_found(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10).close()
    except urllib.error.HTTPError as e:
        return e.code == 404
    return False


def hosts_of(base: str) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in get_json(base + "/-/fleet.json")["hosts"]}


def litestreams_for(config: Path) -> list[int]:
    """Pids of Litestream processes running with this configuration file."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"litestream") and str(config).encode() in argv:
                found.append(int(proc.name))
    return found


def restorable(url: str, cache: Path) -> bool:
    """The central side restores the replica, checked, and it holds the host's run."""
    root, host = url.rsplit("/", 1)
    view = fleet_restore.refresh(ReplicateConfig(url=root, host=host), fleet_restore.HostView(host), cache)
    if view.snapshot is None or view.problem is not None:
        return False
    with contextlib.closing(sqlite3.connect(view.snapshot)) as conn:
        return conn.execute("SELECT count(*) FROM runs WHERE project = 'app-1'").fetchone()[0] == 1


def screenshot(url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=flags, headless=True
        )
        try:
            page = browser.new_page()
            page.goto(url)
            expect(page.locator("#host-host-1 .pim-state")).to_have_text("ok")
            expect(page.locator("#host-host-3 .pim-state")).to_have_text("broken")
            expect(page.locator("#project-host-2-app-2")).to_contain_text("app-2")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "fleet.png"), full_page=True)
        finally:
            browser.close()
