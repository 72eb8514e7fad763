"""The git primitive with real repositories: bounded waits, no repository-named programs."""

from __future__ import annotations

import secrets
import stat
import time
from pathlib import Path

import pytest

from pimainteno import git
from tests.conftest import make_repo, run_git
from tests.test_procs import alive


def executable(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def pushable(tmp_path: Path) -> tuple[Path, Path]:
    """A repository with a local bare remote `origin` and one new commit to push."""
    repo = make_repo(tmp_path / "app")
    remote = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", str(remote))
    run_git(repo, "remote", "add", "origin", str(remote))
    run_git(repo, "push", "-q", "origin", "main")
    (repo / "new.txt").write_text("new\n")
    run_git(repo, "add", "new.txt")
    run_git(repo, "commit", "-q", "-m", "new")
    return repo, remote


# A hook that sleeps; one that leaves a daemon behind and sleeps; one that exits at once but leaves a
# daemon holding receive-pack's pipe (git push then hangs; the daemon is no descendant of ours).
@pytest.mark.parametrize(
    "hook", ["sleep {secs}\n", "setsid sleep {secs} &\nsleep {secs}\n", "setsid sleep {secs} &\nexit 0\n"]
)
def test_push_to_a_remote_whose_pre_receive_hook_sleeps_stops_at_the_timeout(pushable, hook: str):
    repo, remote = pushable
    secs = f"40.{secrets.randbelow(10**8):08d}"
    executable(remote / "hooks" / "pre-receive", hook.format(secs=secs))
    t0 = time.monotonic()
    with pytest.raises(git.GitError, match=r"git push in .* timed out after 3s"):
        git.git(repo, "push", "origin", "main", timeout=3)
    wall = time.monotonic() - t0
    assert 3 <= wall < 3 + 3, f"took {wall:.1f}s"
    assert alive(f"sleep {secs}") == []


def test_repository_fsmonitor_and_hooks_are_never_run_by_our_commands(in_git_repo: Path, tmp_path: Path):
    ran = tmp_path / "ran"
    monitor = executable(tmp_path / "monitor", f'echo fsmonitor >> "{ran}"\n')
    run_git(in_git_repo, "config", "core.fsmonitor", str(monitor))
    for name in ("pre-commit", "post-commit", "post-checkout", "post-merge", "reference-transaction"):
        executable(in_git_repo / ".git" / "hooks" / name, f'echo {name} >> "{ran}"\n')
    run_git(in_git_repo, "status")  # git itself runs them: the trap is armed
    assert "fsmonitor" in ran.read_text()
    ran.unlink()
    (in_git_repo / "README.md").write_text("changed\n")
    git.git(in_git_repo, "status", "--porcelain")
    git.git(in_git_repo, "commit", "-q", "-am", "change")
    git.git(in_git_repo, "checkout", "-q", "-b", "other")
    assert git.changed_paths(in_git_repo) == set()
    assert not ran.exists()


def test_push_keeps_the_users_pre_push_hook(pushable, tmp_path: Path):
    repo, _ = pushable
    executable(repo / ".git" / "hooks" / "pre-push", "echo refused by policy >&2; exit 1\n")
    with pytest.raises(git.GitError, match="failed"):
        git.git(repo, "push", "origin", "main")
    git.git(repo, "push", "-q", "origin", "main", user_hooks=False)  # the explicit opt-out


def test_environment_is_read_at_call_time(in_git_repo: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Changed After Import")
    (in_git_repo / "README.md").write_text("changed\n")
    git.git(in_git_repo, "commit", "-q", "-am", "change")
    assert run_git(in_git_repo, "log", "-1", "--format=%an").strip() == "Changed After Import"


def test_failure_and_input(in_git_repo: Path):
    with pytest.raises(git.GitError, match=r"^git rev-parse in .* failed: fatal: ") as e:
        git.git(in_git_repo, "-c", "core.quotepath=off", "rev-parse", "no-such-rev^{commit}")
    assert e.value.returncode == 128
    sha = git.git(in_git_repo, "hash-object", "-w", "--stdin", input="héllo\n").strip()
    assert run_git(in_git_repo, "cat-file", "-p", sha) == "héllo\n"
    assert git.git(in_git_repo, "rev-parse", "--verify", "nope", check=False) == ""


def test_queries_report_the_repositorys_own_settings_not_our_overrides(in_git_repo: Path):
    run_git(in_git_repo, "config", "core.hooksPath", ".githooks")
    assert git.git(in_git_repo, "config", "--get", "core.hooksPath").strip() == ".githooks"
    assert git.git(in_git_repo, "rev-parse", "--git-path", "hooks").strip() == ".githooks"


def test_diff_drivers_named_by_the_repository_never_run(in_git_repo: Path, tmp_path: Path):
    ran = tmp_path / "ran"
    driver = executable(tmp_path / "driver", f'echo driver >> "{ran}"\ncat "$1"\n')
    run_git(in_git_repo, "config", "diff.evil.textconv", str(driver))
    run_git(in_git_repo, "config", "diff.external", str(driver))
    (in_git_repo / ".gitattributes").write_text("*.md diff=evil\n")
    (in_git_repo / "README.md").write_text("changed\n")
    run_git(in_git_repo, "add", "-A")
    run_git(in_git_repo, "diff", "--cached", "HEAD")  # git itself runs them: the trap is armed
    assert ran.exists()
    ran.unlink()
    diff = git.git(in_git_repo, "diff", "--cached", "HEAD")
    git.git(in_git_repo, "commit", "-q", "-m", "change")
    shown = git.git(in_git_repo, "show", "HEAD") + git.git(in_git_repo, "log", "-p", "-1")
    assert "+changed" in diff and "+changed" in shown
    assert not ran.exists()


def test_only_read_only_queries_run_without_the_die_with_us_hook() -> None:
    """procs.run's preexec_fn (kill the child when pimainteno dies) costs ~1 ms a process; only queries skip it."""
    assert git._read_only("rev-parse", ("rev-parse", "HEAD"))
    assert git._read_only("symbolic-ref", ("symbolic-ref", "--quiet", "--short", "HEAD"))
    assert not git._read_only("symbolic-ref", ("symbolic-ref", "HEAD", "refs/heads/other"))  # sets HEAD
    assert not git._read_only("symbolic-ref", ("symbolic-ref", "--delete", "HEAD"))
    for sub in ("push", "commit", "fetch", "reset", "config", "status", "worktree"):
        assert not git._read_only(sub, (sub,))


def test_head_and_branch_in_one_call_agrees_with_head_and_current_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    sha = git.head(repo)
    assert git.head_and_branch(repo) == (sha, "main") == (sha, git.current_branch(repo))
    run_git(repo, "checkout", "-q", "-b", "heads/odd")  # a branch whose short name looks like a ref
    assert git.head_and_branch(repo) == (sha, "heads/odd") == (sha, git.current_branch(repo))
    run_git(repo, "checkout", "-q", "--detach")
    assert git.head_and_branch(repo) == (sha, None) and git.current_branch(repo) is None
    unborn = tmp_path / "new"
    unborn.mkdir()
    run_git(unborn, "init", "-q", "-b", "trunk")
    assert git.head_and_branch(unborn) == (None, "trunk")
