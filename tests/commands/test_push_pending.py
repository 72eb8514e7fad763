"""`push-pending`: a run asks the remote before pushing again (real git repositories and a bare remote)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.commands.project import configure, database
from tests.conftest import run_cli, run_git


def steps(tmp_path: Path, run_id: int) -> list[dict[str, str]]:
    (raw,) = database(tmp_path).execute("SELECT steps FROM runs WHERE id = ?", [run_id]).fetchone()
    return list(json.loads(raw))


def test_a_push_that_landed_unseen_is_marked_pushed_not_pushed_again(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    assert run_cli("run", "app").returncode == 0
    d = database(tmp_path)
    d.execute("UPDATE commits SET pushed_at = NULL, push_ref = NULL")  # as if the drain died right after git push
    d.conn.commit()
    # The remote refuses every push from now on: a second push would fail; asking it first finds the commit there.
    hook = tmp_path / "remote.git" / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho no pushes today; exit 1\n")
    hook.chmod(0o755)
    again = run_cli("run", "app", "--reason", "again")
    assert again.returncode == 0, again.stdout + again.stderr
    first = steps(tmp_path, 2)[0]
    assert (first["step"], first["outcome"]) == ("push-pending", "ok")
    assert "already has" in first["detail"] and "marked pushed" in first["detail"]
    assert d.execute("SELECT count(*) FROM commits WHERE pushed_at IS NULL").fetchone() == (0,)
    assert run_git(tmp_path / "remote.git", "rev-parse", "main") == run_git(repo, "rev-parse", "HEAD")


def test_a_diverged_project_still_commits_locally_and_clears_once_reconciled(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "remote.git"), str(other)], check=True)
    (other / "README.md").write_text("# rewritten upstream\n")
    run_git(other, "commit", "-qam", "upstream")
    run_git(other, "push", "-q", "origin", "HEAD:main")
    (repo / "LOCAL").write_text("the owner's own local commit\n")  # not pimainteno's: no replay over it
    run_git(repo, "add", "LOCAL")
    run_git(repo, "commit", "-qm", "local work")
    first = run_cli("run", "app")  # commits the fix locally; its push is refused (not a fast-forward)
    assert "rejected (not a fast-forward)" in first.stdout
    second = run_cli("run", "app", "--reason", "again")
    pending = steps(tmp_path, 2)[0]
    assert (pending["step"], pending["outcome"]) == ("push-pending", "skipped"), second.stderr
    assert "commits pimainteno did not make" in pending["detail"]
    d = database(tmp_path)
    assert "moved on" in d.execute("SELECT value FROM status WHERE key = 'diverged.app'").fetchone()[0]
    assert "diverged   app:" in run_cli("status").stdout
    assert "diverged" in run_cli("doctor", "app").stdout

    run_git(repo, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")  # the owner reconciles
    third = run_cli("run", "app", "--reason", "once more")
    assert third.returncode == 0, third.stdout + third.stderr
    pending = steps(tmp_path, 3)[0]
    assert (pending["step"], pending["outcome"]) == ("push-pending", "ok")
    assert d.execute("SELECT count(*) FROM status WHERE key = 'diverged.app'").fetchone() == (0,)
    assert run_git(tmp_path / "remote.git", "rev-parse", "main") == run_git(repo, "rev-parse", "HEAD")
