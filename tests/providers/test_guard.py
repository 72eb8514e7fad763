"""The guard on the main repository's `.git` around a model run, with real repositories."""

from __future__ import annotations

import os
from pathlib import Path

from pimainteno import git
from tests.conftest import make_repo, run_git


def test_unchanged_git_dir_reports_nothing(tmp_path: Path):
    repo = make_repo(tmp_path / "app")
    guard = git.GitDirGuard(repo)
    (repo / "README.md").write_text("work in the tree is not guarded\n")
    run_git(repo, "add", "README.md")  # nor the index
    assert guard.restore() == []


def test_config_hooks_info_and_refs_are_restored_from_a_worktree_guard(tmp_path: Path):
    repo = make_repo(tmp_path / "app")
    worktree = tmp_path / "wt"
    run_git(repo, "worktree", "add", "--detach", "-q", str(worktree))
    gitdir = repo / ".git"
    config, exclude = (gitdir / "config").read_bytes(), (gitdir / "info" / "exclude").read_bytes()
    main = run_git(repo, "rev-parse", "main").strip()
    guard = git.GitDirGuard(worktree)

    run_git(repo, "config", "core.fsmonitor", "/bin/evil")
    hook = gitdir / "hooks" / "post-merge"
    hook.write_text("#!/bin/sh\ntouch /pwned\n")
    hook.chmod(0o755)
    (gitdir / "hooks" / "pre-commit.sample").unlink()
    (gitdir / "info" / "exclude").write_text("*\n")
    (gitdir / "info" / "attributes").write_text("* filter=evil\n")
    run_git(repo, "branch", "planted")
    run_git(worktree, "commit", "-q", "--allow-empty", "-m", "the worktree's own HEAD is not guarded")
    run_git(repo, "update-ref", "refs/heads/main", run_git(worktree, "rev-parse", "HEAD").strip())
    os.symlink("/etc", gitdir / "hooks" / "linked")

    changed = guard.restore()
    assert {"config", "hooks/post-merge", "hooks/pre-commit.sample", "info/exclude", "info/attributes",
            "refs/heads/planted", "refs/heads/main", "hooks/linked"} <= set(changed)  # fmt: skip
    assert (gitdir / "config").read_bytes() == config and (gitdir / "info" / "exclude").read_bytes() == exclude
    assert not hook.exists() and not (gitdir / "info" / "attributes").exists()
    assert not os.path.lexists(gitdir / "hooks" / "linked")
    assert (gitdir / "hooks" / "pre-commit.sample").stat().st_mode & 0o777 == 0o755
    assert run_git(repo, "rev-parse", "main").strip() == main
    assert run_git(repo, "branch", "--list", "planted") == ""
    assert guard.changes() == []


def test_a_hooks_directory_replaced_by_a_symlink_is_put_back(tmp_path: Path):
    repo = make_repo(tmp_path / "app")
    hooks = repo / ".git" / "hooks"
    before = sorted(p.name for p in hooks.iterdir())
    guard = git.GitDirGuard(repo)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "post-checkout").write_text("#!/bin/sh\n")
    hooks.rename(tmp_path / "old-hooks")
    os.symlink(elsewhere, hooks)
    assert "hooks" in guard.restore()
    assert hooks.is_dir() and not hooks.is_symlink() and sorted(p.name for p in hooks.iterdir()) == before
    assert (elsewhere / "post-checkout").exists()  # what the link pointed to is not ours to delete


def test_describe_changes_names_at_most_three():
    assert git.describe_changes(["config"]) == ".git/config"
    assert git.describe_changes(["config", "hooks/x"]) == ".git/config and .git/hooks/x"
    assert git.describe_changes(["a", "b", "c", "d", "e"]) == ".git/a, .git/b, .git/c and 2 more"
