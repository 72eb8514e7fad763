"""What every figure shares: an isolated workspace, sample repositories, timing and formatting."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PY = sys.executable
PIMAINTENO = str(BIN / "pimainteno")
Row = tuple[str, str, str, str]  # figure, measured, reference / ratio, target and verdict

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}
# Inherited settings that would point a figure at the user's files or change what it measures.
_DROP = ("PIMAINTENO_DB", "PIMAINTENO_ACTIVE", "PIMAINTENO_CHAINED", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "GIT_DIR")


def progress(message: str) -> None:
    print(f"bench:   {message}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


@dataclass
class Workspace:
    """A temporary directory with its own HOME, git identity, state directory and configuration."""

    root: Path
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.root / "PiMainteno.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def database(self) -> Path:
        return self.state / "pimainteno.db"

    def run(self, argv: Sequence[str], *, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        result = subprocess.run(list(argv), env=self.env, text=True, check=False, **kw)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {(result.stderr or '')[-2000:]}")
        return result

    def pimainteno(self, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run([PIMAINTENO, *args], check=check, **kw)

    def git(self, repo: Path, *args: str) -> str:
        return self.run(["git", "-C", str(repo), *args]).stdout

    def make_repo(self, path: Path, files: dict[str, str] | None = None) -> Path:
        """A real repository with one commit on main."""
        path.mkdir(parents=True, exist_ok=True)
        for name, text in (files or {"README.md": f"# {path.name}\n\nA sample project.\n"}).items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        self.git(path, "init", "-q", "-b", "main")
        self.git(path, "add", "-A")
        self.git(path, "commit", "-q", "-m", "initial")
        return path

    def write_config(self, text: str) -> Path:
        self.config.write_text(text)
        return self.config

    def prepare_db(self) -> None:
        """The migrated database with the configured projects, as any command leaves it."""
        from pimainteno import config, db, records

        cfg = config.load(self.config)
        d = db.open_db(self.database)
        records.sync_projects(d, cfg.projects, cfg.llm.provider)
        d.conn.close()

    def sql(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        import sqlite3

        conn = sqlite3.connect(self.database)
        try:
            return conn.execute(query, list(params)).fetchall()
        finally:
            conn.close()


@contextlib.contextmanager
def workspace(name: str) -> Iterator[Workspace]:
    root = Path(tempfile.mkdtemp(prefix=f"pimainteno-bench-{name}-"))
    try:
        home = root / "home"
        home.mkdir()
        (home / ".gitconfig").write_text('[init]\n\tdefaultBranch = main\n[protocol "file"]\n\tallow = always\n')
        env = {k: v for k, v in os.environ.items() if k not in _DROP}
        env.update(GIT_IDENTITY)
        env.update(
            HOME=str(home),
            GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
            PIMAINTENO_STATE_DIR=str(root / "state"),
            PIMAINTENO_CONFIG=str(root / "PiMainteno.toml"),
            # As an installed copy starts: its bytecode cached (the warm-up run writes it), like the
            # reference tools' in site-packages. A session that sets PYTHONDONTWRITEBYTECODE would
            # otherwise recompile pimainteno on every timed start, and only pimainteno.
            PYTHONPYCACHEPREFIX=str(root / "pycache"),
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        yield Workspace(root, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def median_seconds(argv: Sequence[str], runs: int = 15, *, warmup: int = 1, **kw: Any) -> float:
    """Median wall time of a command (output discarded), after `warmup` untimed runs."""
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, **kw)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_seconds_side_by_side(commands: Sequence[Sequence[str]], runs: int = 15, **kw: Any) -> list[float]:
    """Median wall time of each command, run in turns (a, b, a, b, ...) so that a slow spell of the
    machine falls on all of them alike: what a ratio between them needs."""
    times: list[list[float]] = [[] for _ in commands]
    for i in range(1 + runs):  # the first turn warms the caches, untimed
        for argv, spent in zip(commands, times, strict=True):
            start = time.perf_counter()
            subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, **kw)
            if i:
                spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"
