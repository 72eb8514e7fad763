"""A real `pimainteno dashboard` process (uvicorn + Datasette) on a free loopback port, for the tests."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue


@dataclass(frozen=True)
class Running:
    proc: subprocess.Popen[str]
    url: str  # ends with /
    login: str  # root's one-time login link


@contextmanager
def running_dashboard(config_path: Path, env: dict[str, str] | None = None) -> Iterator[Running]:
    """Start it, wait until it answers /api/status, stop it afterwards (killed if it will not stop)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pimainteno", "--config", str(config_path), "dashboard", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: Queue[str] = Queue()
    # A thread reads: select() on a buffered text pipe misses lines already in the buffer.
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout or []], daemon=True).start()
    try:
        got: list[str] = []
        try:
            while len(got) < 2:
                got.append(lines.get(timeout=30))
        except Empty:
            proc.kill()
            raise AssertionError(f"the dashboard did not start: {got} {proc.communicate()[1]}") from None
        url = got[0].removeprefix("Dashboard: ")
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + "api/status", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        yield Running(proc, url, got[1].split(": ", 1)[1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
