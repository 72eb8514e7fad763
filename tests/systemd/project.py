"""A sample project with a real service, for the tests that run pimainteno inside the systemd sandbox.

Everything lives in a directory outside /tmp (under test-artifacts/), so the installed units run
with the PrivateTmp= they get on a real host; the sandbox shares these files with the host.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pimainteno.commands.demo import make_sample
from tests.sandbox import REPO, VENV_PYTHON, SystemdSandbox

PY = str(VENV_PYTHON)
TESTS = [PY, "-m", "unittest", "discover", "-q"]
T = TypeVar("T")

SERVE = """\
import time

from demo_app.convert import c_to_f

print(f"demo-app up: 21C is {c_to_f(21)}F", flush=True)
while True:
    time.sleep(1)
"""

# The `command` provider's fixer. "heal": ruff's fixes, and when the prompt carries the service's
# error line (the failure's journal), the line that breaks the service goes. "crash": a patch that
# passes the tests but makes the service die on start.
FIXER = """\
import os, pathlib, subprocess, sys

serve = pathlib.Path("serve.py")
if sys.argv[1] == "heal":
    subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "--quiet", "--exit-zero", "."], check=True)
    if "settings file is missing" in os.environ.get("PIMAINTENO_PROMPT", ""):
        serve.write_text("".join(l for l in serve.read_text().splitlines(True) if "# BREAK" not in l))
elif sys.argv[1] == "crash":
    serve.write_text(serve.read_text().replace("while True:", 'raise SystemExit("crashing on start")\\nwhile True:'))
"""


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    root = REPO / "test-artifacts" / f"{name}-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def service_workdir(
    sandbox: SystemdSandbox, name: str, units: tuple[str, ...] = ("demo-app.service",)
) -> Iterator[Path]:
    """`workdir` for tests of a service: the tests of a module share one sandbox, and a test that failed
    midway must not leave its service running (from a directory about to go) for the next one."""
    with workdir(name) as root:
        try:
            yield root
        finally:
            sandbox.systemctl("stop", *units, check=False)
            sandbox.systemctl("reset-failed", *units, check=False)


def git(repo: Path, *args: str) -> str:
    """git as a user of the project would run it (their own identity)."""
    who = ["-c", "user.name=Project Owner", "-c", "user.email=owner@example.com"]
    return subprocess.run(["git", "-C", str(repo), *who, *args], check=True, capture_output=True, text=True).stdout


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def make_project(root: Path, *, fixer: str = "heal", unit: str = "demo-app.service", extra: str = "") -> Path:
    """The demo sample plus serve.py (the service), a bare remote and a configuration; returns the config."""
    repo, _ = make_sample(root)
    (repo / "serve.py").write_text(SERVE)
    git(repo, "add", "serve.py")
    git(repo, "commit", "-qm", "Serve the converter")
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    (root / "fixer.py").write_text(FIXER)
    config = root / "PiMainteno.toml"
    config.write_text(
        f'[llm]\nprovider = "command"\ncommand = {toml_list([PY, str(root / "fixer.py"), fixer])}\n\n'
        f"[state]\ndir = {json.dumps(str(root / 'state'))}\n\n"
        f"{extra}\n"
        f'[[project]]\nname = "app"\npath = {json.dumps(str(repo))}\nunit = "{unit}"\nbranch = "main"\n'
        f"test = {toml_list(TESTS)}\ntest_timeout = 60\n"
    )
    return config


def service_unit(root: Path) -> str:
    return f"[Service]\nWorkingDirectory={root / 'demo-app'}\nExecStart={PY} serve.py\n"


def pm(sandbox: SystemdSandbox, config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`pimainteno --config CONFIG ARGS` inside the sandbox."""
    return sandbox.python(["-m", "pimainteno", "--config", str(config), *args], check=False, timeout=timeout)


def query(root: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    path = root / "state" / "pimainteno.db"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path, timeout=15)) as conn:
        return conn.execute(sql, params).fetchall()


def wait_for(what: str, check: Callable[[], T], timeout: float = 30, every: float = 0.15) -> T:
    """``check()`` until it is true; every 0.15 s, as most checks start a process in the sandbox (nsenter)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def queued(root: Path) -> list[dict[str, Any]]:
    queue = root / "state" / "queue"
    return [json.loads(p.read_text()) for p in sorted(queue.glob("*.json"))] if queue.is_dir() else []
