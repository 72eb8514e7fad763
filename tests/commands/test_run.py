"""`run`: the whole chain on a real repository — proven, committed, pushed, or stopped where the mode says;
broken patches never land, a refused push keeps the commit, a killed run leaves a consistent repository."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pimainteno import errors
from tests.commands.project import (
    BREAK,
    PY,
    RUFF_FIX,
    TESTS,
    configure,
    count,
    database,
    fingerprint,
    logging_fixer,
    toml_list,
)
from tests.conftest import run_cli, run_git


def test_run_proves_commits_and_pushes_keeping_user_work_elsewhere(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    (repo / "README.md").write_text("# demo-app\n\nMy unsaved edit.\n")
    (repo / "notes.txt").write_text("untracked notes\n")
    result = run_cli("run", "app")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("app: ok — run #1 — proposal #1 — commit ")
    assert (repo / "README.md").read_text() == "# demo-app\n\nMy unsaved edit.\n"
    assert (repo / "notes.txt").read_text() == "untracked notes\n"
    assert run_git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["demo_app/convert.py"]
    assert run_git(tmp_path / "remote.git", "rev-parse", "main") == run_git(repo, "rev-parse", "HEAD")
    run = database(tmp_path).execute("select status, trigger, steps from runs").fetchone()
    assert run[:2] == ("ok", "cli")
    steps = json.loads(run[2])
    assert [s["step"] for s in steps] == ["summarize", "propose", "validate", "commit", "merge", "push", "restart"]
    assert steps[-1]["outcome"] == "skipped"  # no systemd here: the restart is skipped, not failed
    again = run_cli("run", "--all")
    assert again.returncode == 0 and "app: nothing" in again.stdout


def test_a_patch_that_breaks_the_tests_is_never_committed(tmp_path: Path) -> None:
    repo = configure(tmp_path, command=BREAK)
    before = fingerprint(repo)
    result = run_cli("run", "app")
    assert result.returncode == errors.VALIDATION_FAILED
    assert "rejected" in result.stdout and "the tests failed" in result.stdout
    assert fingerprint(repo)[:1] == before[:1] and fingerprint(repo)[2] == before[2]
    assert run_git(tmp_path / "remote.git", "rev-parse", "main") == before[0]
    d = database(tmp_path)
    rows = d.execute("select status, test_output from proposals order by id").fetchall()
    # One retry by default; the fixer made the same change again, which is not tested twice (memory).
    assert [r[0] for r in rows] == ["rejected", "discarded"]
    assert "FAIL" in rows[0][1] or "Error" in rows[0][1]
    assert d.execute("select count(*) from llm_calls where purpose = 'patch'").fetchone()[0] == 2
    assert d.execute("select count(*) from commits").fetchone()[0] == 0


def test_retry_prompt_carries_the_failing_test_output(tmp_path: Path) -> None:
    log = tmp_path / "prompts.log"
    configure(tmp_path, command=logging_fixer(log, BREAK[2]))
    assert run_cli("run", "app").returncode == errors.VALIDATION_FAILED
    first, second = log.read_text().split("<<END>>")[:2]
    assert "The previous proposal failed the tests with" not in first
    assert "## The previous proposal failed the tests with" in second and "AssertionError" in second


def test_mode_propose_stops_after_proposing(tmp_path: Path) -> None:
    repo = configure(tmp_path, mode="propose")
    before = fingerprint(repo)
    result = run_cli("run", "app")
    assert result.returncode == 0 and "app: ok" in result.stdout
    assert fingerprint(repo)[0] == before[0]
    assert database(tmp_path).execute("select status from proposals").fetchone() == ("proposed",)


def test_mode_commit_does_not_push(tmp_path: Path) -> None:
    repo = configure(tmp_path, mode="commit")
    start = run_git(repo, "rev-parse", "HEAD")
    assert run_cli("run", "app").returncode == 0
    assert run_git(repo, "rev-parse", "HEAD") != start
    assert run_git(tmp_path / "remote.git", "rev-parse", "main") == start


def test_rejected_push_keeps_the_commit_local(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "remote.git"), str(other)], check=True)
    (other / "CHANGES").write_text("upstream moved on\n")
    run_git(other, "add", "CHANGES")
    run_git(other, "commit", "-qm", "upstream")
    run_git(other, "push", "-q", "origin", "HEAD:main")
    result = run_cli("run", "app")
    assert result.returncode == errors.TOOL_FAILED
    assert "rejected (not a fast-forward)" in result.stdout
    local = run_git(repo, "log", "-1", "--format=%s")
    assert local.startswith("Apply ruff fixes")
    row = database(tmp_path).execute("select pushed_at, push_error from commits").fetchone()
    assert row[0] is None and "not a fast-forward" in row[1]


def test_two_concurrent_runs_one_reports_already_running(tmp_path: Path) -> None:
    configure(tmp_path, command=[PY, "-c", "import time; time.sleep(4)"])
    first = subprocess.Popen([PY, "-m", "pimainteno", "run", "app"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (tmp_path / "state" / "locks" / "app.lock").exists() and count(
            tmp_path, "select count(*) from runs where status = 'running'"
        ):
            break
        time.sleep(0.1)
    second = run_cli("run", "app")
    out, err = first.communicate(timeout=60)
    assert second.returncode == 0 and "already running" in second.stderr
    assert "app: already-running" in second.stdout
    assert first.returncode == 0 and "app: nothing" in out
    assert count(tmp_path, "select count(*) from runs") == 1


def kill_parent_script() -> str:
    return "#!/bin/sh\nkill -KILL $PIMAINTENO_VICTIM\nsleep 5\n"


# No "merge": pimainteno's fast-forward runs no hooks (git.py), so nothing of the project's can kill it there.


@pytest.mark.parametrize("where", ["propose", "validate", "push"])
def test_killed_run_leaves_a_consistent_repo_and_the_next_run_succeeds(tmp_path: Path, where: str) -> None:
    # In the proof sandbox the tests cannot see pimainteno's process to kill it: validate is killed unsandboxed.
    repo = configure(tmp_path, extra="sandbox = false\n" if where == "validate" else "")
    killer = tmp_path / "kill.sh"
    killer.write_text(kill_parent_script())
    killer.chmod(0o755)
    env = dict(os.environ)
    if where == "propose":
        configure_cmd = ["/bin/sh", str(killer)]
        (tmp_path / "PiMainteno.toml").write_text(
            (tmp_path / "PiMainteno.toml").read_text().replace(toml_list(RUFF_FIX), toml_list(configure_cmd))
        )
    elif where == "validate":
        (tmp_path / "PiMainteno.toml").write_text(
            (tmp_path / "PiMainteno.toml").read_text().replace(toml_list(TESTS), toml_list(["/bin/sh", str(killer)]))
        )
    elif where == "merge":
        # pimainteno's own merge runs no repository hooks, so a `git` on PATH that dies right after merging
        real_git = shutil.which("git")
        wrapper = tmp_path / "bin" / "git"
        wrapper.parent.mkdir()
        wrapper.write_text(
            f'#!/bin/sh\nfor a in "$@"; do [ "$a" = merge ] && {{ "{real_git}" "$@"; kill -KILL $PIMAINTENO_VICTIM; sleep 5; }}; done\n'
            f'exec "{real_git}" "$@"\n'
        )
        wrapper.chmod(0o755)
        env["PATH"] = f"{wrapper.parent}:{env['PATH']}"
    else:
        (repo / ".git" / "hooks" / "pre-push").write_text(kill_parent_script())
        (repo / ".git" / "hooks" / "pre-push").chmod(0o755)
    (repo / "README.md").write_text("# demo-app\n\nuser work\n")
    before = fingerprint(repo)
    # The victim is the run itself: its children (fixer, tests, git hooks) learn its pid from the environment.
    proc = subprocess.Popen([PY, "-c", "import os, sys; os.environ['PIMAINTENO_VICTIM'] = str(os.getpid()); "
                             "from pimainteno.cli import main; main(['run', 'app'])"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    head, status, files = fingerprint(repo)
    assert " M README.md" in status and (repo / "README.md").read_text() == "# demo-app\n\nuser work\n"
    if head == before[0]:
        assert (repo / "demo_app" / "convert.py").read_text().startswith("import os")  # untouched
    else:
        assert run_git(repo, "log", "-1", "--format=%s").startswith("Apply ruff fixes")  # whole commit
        assert (repo / "demo_app" / "convert.py").read_text().startswith("\n")
    for hook in ("post-merge", "pre-push"):
        (repo / ".git" / "hooks" / hook).unlink(missing_ok=True)
    (tmp_path / "PiMainteno.toml").write_text(
        (tmp_path / "PiMainteno.toml")
        .read_text()
        .replace(
            f'"/bin/sh", "{killer}"', ", ".join(json.dumps(x) for x in (RUFF_FIX if where == "propose" else TESTS))
        )
    )
    after = run_cli("run", "app", "--reason", "try again")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "app: ok" in after.stdout or "app: nothing" in after.stdout
    d = database(tmp_path)
    assert d.execute("select status from runs order by id").fetchall()[0] == ("interrupted",)
    assert run_git(tmp_path / "remote.git", "rev-parse", "main") == run_git(repo, "rev-parse", "HEAD")
    assert not list((tmp_path / "state" / "worktrees").iterdir())
