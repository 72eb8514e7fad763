"""`pimainteno demo`: the whole chain offline on a throwaway sample project, with no API key.

A small Python package with lint problems that ruff fixes, a passing test suite and a local bare
remote; the `command` provider runs `ruff check --fix`; the run summarizes, proposes, proves the
patch with the tests, commits and pushes it.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
import tempfile
from pathlib import Path

import click

from pimainteno.app import App
from pimainteno.errors import InputError, ToolError

SAMPLE = {
    "README.md": "# demo-app\n\nA tiny temperature converter that pimainteno keeps tidy.\n",
    ".gitignore": "__pycache__/\n*.pyc\n",
    "demo_app/__init__.py": '"""A tiny temperature converter."""\n',
    "demo_app/convert.py": (
        "import os\nimport sys\nfrom typing import List\n\n\n"
        "def c_to_f(celsius):\n    return celsius * 9 / 5 + 32\n\n\n"
        "def f_to_c(fahrenheit):\n    return (fahrenheit - 32) * 5 / 9\n"
    ),
    "tests/__init__.py": "",
    "tests/test_convert.py": (
        "import unittest\n\nfrom demo_app.convert import c_to_f, f_to_c\n\n\n"
        "class ConvertTest(unittest.TestCase):\n"
        "    def test_round_trip(self):\n        self.assertEqual(f_to_c(c_to_f(21.5)), 21.5)\n\n"
        "    def test_boiling(self):\n        self.assertEqual(c_to_f(100), 212)\n"
    ),
}


def _git(*args: str, cwd: Path) -> str:
    """git in ``cwd`` as the demo's own author, bounded like every git call (a failure is one line)."""
    from pimainteno import git

    who = ("-c", "user.name=pimainteno demo", "-c", "user.email=demo@localhost", "-c", "init.defaultBranch=main")
    return git.git(cwd, *who, *args)


def make_sample(root: Path) -> tuple[Path, Path]:
    repo, remote = root / "demo-app", root / "remote.git"
    for name, text in SAMPLE.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git("init", "--quiet", "--bare", str(remote), cwd=root)
    _git("init", "--quiet", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "--quiet", "-m", "Start the demo app", cwd=repo)
    _git("remote", "add", "origin", str(remote), cwd=repo)
    _git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=repo)
    return repo, remote


def write_config(root: Path, repo: Path) -> Path:
    py = sys.executable
    ruff = f"{shlex.quote(py)} -m ruff"
    fixer = f"{ruff} check --fix --quiet --exit-zero . && {ruff} format --quiet ."
    config = root / "PiMainteno.toml"
    config.write_text(
        "# The demo's configuration: the offline `command` provider (ruff) and the sample's tests.\n"
        '[llm]\nprovider = "command"\n'
        "# a trusted shell string: fix what ruff can, then format what the fix left behind\n"
        f"command = {json.dumps(fixer)}\n\n"
        f"[state]\ndir = {str(root / 'state')!r}\n\n"
        '[[project]]\nname = "demo-app"\n'
        f'path = {str(repo)!r}\nbranch = "main"\n'
        f'test = [{py!r}, "-m", "unittest", "discover", "-q"]\n'
        'mode = "push"\n'
        "restart = false  # the sample is not a systemd service\n"
    )
    return config


def demo(directory: Path | None, verbosity: int = 0) -> int:
    if importlib.util.find_spec("ruff") is None:
        raise ToolError("the demo's fixer is ruff, which is not installed; run `pip install ruff` (or `make demo`)")
    if directory is None:
        root = Path(tempfile.mkdtemp(prefix="pimainteno-demo-"))
    else:
        root = directory.expanduser().resolve()
        if root.exists() and any(root.iterdir()):
            raise InputError(f"{root} is not empty; give the demo a new or empty directory")
        root.mkdir(parents=True, exist_ok=True)
    say = click.echo
    say(f"pimainteno demo in {root}\n")
    repo, remote = make_sample(root)
    config = write_config(root, repo)
    say(f"1. A sample project with lint problems and passing tests: {repo}")
    say(f"   its remote: {remote}\n   the configuration: {config}\n")

    from pimainteno import pipeline, records

    app = App(str(config), None, verbosity)
    outcome = pipeline.run(app, pipeline.Request("demo-app", source="demo"))
    summary = records.rows(app.db, "SELECT text FROM summaries WHERE project = 'demo-app' ORDER BY id DESC LIMIT 1")
    say("2. Summary (cached by HEAD, also written to demo-app/codex.md):\n")
    say("   " + "\n   ".join((summary[0]["text"] if summary else "(none)").splitlines()[:8]) + "\n")
    if outcome.proposal_id:
        proposal = records.get_proposal(app.db, outcome.proposal_id)
        say(f"3. Proposal #{proposal.id} ({proposal.status}), proven by the sample's tests in a clean worktree:\n")
        say(proposal.diff)
    log = _git("log", "-1", "--format=%h %s%n%n%b", cwd=repo)
    say("4. The commit:\n\n   " + "\n   ".join(log.strip().splitlines()) + "\n")
    say(f"5. The remote's main is now: {_git('log', '-1', '--format=%h %s', 'main', cwd=remote).strip()}\n")
    say(f"Result: {outcome.line()}\n")
    say("Next, try:")
    beside = Path(sys.executable).parent / "pimainteno"
    me = str(beside) if beside.exists() else f"{sys.executable} -m pimainteno"
    say(f"   {me} --config {config} status")
    say(f"   {me} --config {config} dashboard      # then open http://127.0.0.1:8001/")
    say(f"   {me} --config {config} run --all      # nothing left to fix: no new proposal")
    return 0 if outcome.status == "ok" else 1
