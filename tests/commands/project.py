"""The sample project the pipeline commands' tests run on (`pimainteno demo`'s, with a ruff fixer and its
unittest suite), and what they look at: the repository's fingerprint, the database."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from pimainteno import db
from pimainteno.commands.demo import make_sample
from tests.conftest import run_git

PY = sys.executable


RUFF_FIX = [PY, "-m", "ruff", "check", "--fix", "--quiet", "--exit-zero", "."]


TESTS = [PY, "-m", "unittest", "discover", "-q"]


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def configure(tmp_path: Path, *, command: list[str] | str = RUFF_FIX, mode: str = "push", extra: str = "") -> Path:
    repo, _ = make_sample(tmp_path)
    cmd = toml_list(command) if isinstance(command, list) else json.dumps(command)
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\nprovider = "command"\ncommand = {cmd}\n\n'
        f'[[project]]\nname = "app"\npath = "{repo}"\nbranch = "main"\ntest = {toml_list(TESTS)}\n'
        f'mode = "{mode}"\ntest_timeout = 60\n{extra}'
    )
    return repo


def fingerprint(repo: Path) -> tuple[str, str, str]:
    """HEAD, `git status`, and a hash of every file in the work tree and of the index's entries.

    The summary file (codex.md) is pimainteno's one intended write, kept out of `git status`.
    """
    h = hashlib.sha256()
    for path in sorted(p for p in repo.rglob("*") if p.is_file() and ".git" not in p.relative_to(repo).parts[:1]):
        if path.name != "codex.md":
            h.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    h.update(run_git(repo, "ls-files", "--stage").encode())
    return run_git(repo, "rev-parse", "HEAD"), run_git(repo, "status", "--porcelain"), h.hexdigest()


def database(tmp_path: Path) -> db.sqlite_utils.Database:
    return db.open_db(tmp_path / "state" / "pimainteno.db")


def count(tmp_path: Path, sql: str) -> int:
    return database(tmp_path).execute(sql).fetchone()[0]


BREAK = [PY, "-c", "import pathlib; p = pathlib.Path('demo_app/convert.py'); "
         "p.write_text(p.read_text().replace('* 9 / 5 + 32', '* 2'))"]  # fmt: skip


def logging_fixer(log: Path, then: str = "") -> list[str]:
    """A fixer that records the prompt it was given (PIMAINTENO_PROMPT), then runs `then`."""
    return [PY, "-c", f"import os, pathlib; open({str(log)!r}, 'a').write(os.environ['PIMAINTENO_PROMPT'] + '<<END>>'); "
            + then]  # fmt: skip
