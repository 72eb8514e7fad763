"""The pipeline as a library: one Request in, an outcome back, every proposal move recorded; real git repos."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pimainteno import errors, pipeline, records
from pimainteno.app import App
from pimainteno.commands.demo import make_sample
from pimainteno.pipeline import Request, RunOutcome
from pimainteno.queue import Trigger
from tests.conftest import make_repo, run_git

PY = sys.executable
RUFF_FIX = [PY, "-m", "ruff", "check", "--fix", "--quiet", "--exit-zero", "."]
TESTS = [PY, "-m", "unittest", "discover", "-q"]


def configure(tmp_path: Path, *, command: list[str] = RUFF_FIX, test: list[str] = TESTS, mode: str = "push") -> App:
    repo, _ = make_sample(tmp_path)
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\nprovider = "command"\ncommand = {json.dumps(command)}\n\n'
        f'[[project]]\nname = "app"\npath = "{repo}"\nbranch = "main"\ntest = {json.dumps(test)}\n'
        f'mode = "{mode}"\ntest_timeout = 60\nrestart = false\n'
    )
    return App(str(tmp_path / "PiMainteno.toml"))


def events(app: App, proposal_id: int) -> list[tuple[str | None, str, str]]:
    rows = app.db["proposal_events"].rows_where("proposal_id = ?", [proposal_id], order_by="id")
    return [(r["from_status"], r["to_status"], r["actor"]) for r in rows]


def test_a_run_records_each_proposal_move_and_commits_exactly_the_proven_diff(tmp_path: Path) -> None:
    # The test command also leaves build output (an untracked file): that must never reach the commit.
    app = configure(tmp_path, test=["sh", "-c", 'echo built by the tests > build.out && exec "$@"', "sh", *TESTS])
    repo = app.project("app").path
    outcome = pipeline.run(app, Request("app"))
    assert (outcome.status, outcome.exit_code, outcome.error) == ("ok", errors.OK, None)
    assert outcome.commit_sha == run_git(repo, "rev-parse", "HEAD").strip()
    assert run_git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["demo_app/convert.py"]
    proposal = records.get_proposal(app.db, outcome.proposal_id or 0)
    assert proposal.status == "pushed"
    landed = run_git(repo, "diff", "HEAD~1", "HEAD")
    patch_id = subprocess.run(["git", "-C", str(repo), "patch-id", "--stable"], input=landed, capture_output=True,
                              text=True, check=True).stdout.split()[0]  # fmt: skip
    assert proposal.fingerprint == patch_id
    assert [e[:2] for e in events(app, proposal.id)] == [
        (None, "proposed"), ("proposed", "validated"), ("validated", "committed"), ("committed", "pushed"),
    ]  # fmt: skip
    assert f"Pimainteno-Proposal: {proposal.id}" in run_git(repo, "log", "-1", "--format=%B")
    assert app.db["summaries"].get(1)["llm_call_id"] == app.db["llm_calls"].get(1)["id"]


def test_a_policy_refusal_ends_the_run_rejected_with_the_bad_input_code(tmp_path: Path) -> None:
    app = configure(tmp_path, command=[PY, "-c", "open('.env', 'w').write('SECRET=1\\n')"])
    repo = app.project("app").path
    before = run_git(repo, "rev-parse", "HEAD")
    outcome = pipeline.run(app, Request("app"))
    assert (outcome.status, outcome.exit_code) == ("rejected", errors.BAD_INPUT)
    assert outcome.error and outcome.error.startswith("patch rejected") and ".env" in outcome.error
    assert pipeline.exit_code([outcome]) == errors.BAD_INPUT
    assert run_git(repo, "rev-parse", "HEAD") == before and not (repo / ".env").exists()
    proposal = records.get_proposal(app.db, outcome.proposal_id or 0)
    assert proposal.status == "rejected"
    assert app.db["runs"].get(outcome.run_id)["proposal_id"] == proposal.id


def test_approving_a_proposal_in_propose_mode_lands_it(tmp_path: Path) -> None:
    app = configure(tmp_path, mode="propose")
    repo = app.project("app").path
    first = pipeline.run(app, Request("app", source="timer"))
    assert first.status == "ok" and first.commit_sha is None and first.proposal_id
    assert records.get_proposal(app.db, first.proposal_id).status == "proposed"
    approved = pipeline.dispatch(app, Request("app", kind="apply", source="dashboard", proposal_id=first.proposal_id))
    assert isinstance(approved, RunOutcome) and approved.status == "ok", approved
    assert approved.commit_sha == run_git(repo, "rev-parse", "HEAD").strip()
    assert run_git(tmp_path / "remote.git", "rev-parse", "main") == run_git(repo, "rev-parse", "HEAD")
    assert events(app, first.proposal_id)[1] == ("proposed", "approved", "dashboard")
    assert app.db["proposals"].get(first.proposal_id)["decided_by"] == "dashboard"
    again = pipeline.run(app, Request("app", kind="apply", proposal_id=first.proposal_id))
    assert again.status == "failed" and f"proposal #{first.proposal_id} is pushed" in (again.error or "")


def test_reject_request_marks_only_a_waiting_proposal(tmp_path: Path) -> None:
    app = configure(tmp_path, mode="propose")
    pid = pipeline.run(app, Request("app")).proposal_id
    assert pid
    wrong = pipeline.reject_proposal(app, Request("other", kind="reject", source="dashboard", proposal_id=pid))
    assert wrong == pipeline.Outcome("failed", error=f"no proposal #{pid} for other")
    done = pipeline.dispatch(app, Request("app", kind="reject", source="dashboard", proposal_id=pid))
    assert done == pipeline.Outcome("rejected")
    assert app.db["proposals"].get(pid)["status_reason"] == "rejected on the dashboard"
    twice = pipeline.reject_proposal(app, Request("app", kind="reject", source="dashboard", proposal_id=pid))
    assert (
        twice.status == "failed"
        and twice.error == "proposal #1 was rejected by dashboard (rejected on the dashboard); not rejecting it"
    )


def test_a_reject_that_comes_while_a_proposal_is_applied_waits_and_finds_it_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lifecycle check, `git apply` and the `applied` mark are one write transaction: a Reject
    drained meanwhile (another process, another connection) cannot land between them."""
    import threading

    from pimainteno import git
    from pimainteno.pipeline import land

    app = configure(tmp_path, mode="propose")
    pid = pipeline.run(app, Request("app")).proposal_id
    assert pid
    rejected: list[pipeline.Outcome] = []
    real_git = git.git

    def reject_meanwhile(repo: object, *args: str, **kw: object) -> str:
        if args[:2] == ("apply", "--index"):  # the moment the tree is about to change
            other = App(str(tmp_path / "PiMainteno.toml"))  # the drain's own connection
            request = Request("app", kind="reject", source="dashboard", proposal_id=pid)
            worker = threading.Thread(target=lambda: rejected.append(pipeline.reject_proposal(other, request)))
            worker.start()
            worker.join(0.5)
            assert worker.is_alive(), "the reject did not wait for the apply's transaction"
            reject_meanwhile.worker = worker  # type: ignore[attr-defined]
        return real_git(repo, *args, **kw)  # type: ignore[arg-type]

    with monkeypatch.context() as patched:
        patched.setattr(land.git, "git", reject_meanwhile)
        applied = pipeline.apply_patch(app, None, proposal_id=pid)
    reject_meanwhile.worker.join(30)  # type: ignore[attr-defined]
    assert applied.paths == ["demo_app/convert.py"]
    assert records.get_proposal(app.db, pid).status == "applied"
    assert rejected and rejected[0].status == "failed" and "applied" in (rejected[0].error or ""), rejected
    assert run_git(app.project("app").path, "diff", "--cached", "--name-only").split() == ["demo_app/convert.py"]


def test_an_apply_the_database_does_not_take_leaves_the_tree_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    app = configure(tmp_path, mode="propose")
    repo = app.project("app").path
    pid = pipeline.run(app, Request("app")).proposal_id
    assert pid
    before = run_git(repo, "status", "--porcelain"), (repo / "demo_app" / "convert.py").read_text()

    def full(*args: object, **kw: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(records, "transition", full)
        with pytest.raises(sqlite3.OperationalError):
            pipeline.apply_patch(app, None, proposal_id=pid)
    assert (run_git(repo, "status", "--porcelain"), (repo / "demo_app" / "convert.py").read_text()) == before
    assert records.get_proposal(app.db, pid).status == "proposed"


def test_recover_settles_what_a_killed_run_left(tmp_path: Path) -> None:
    app = configure(tmp_path, mode="propose")
    project = app.project("app")
    pid = pipeline.run(app, Request("app")).proposal_id
    assert pid
    records.transition(app.db, pid, "validated", actor="pimainteno")
    dead = records.start_run(app.db, "app", "timer")
    app.db["runs"].update(dead, {"pid": 2**22 + 7})  # no such process
    ghost = "f" * 40  # recorded by a run killed before its fast-forward
    records.add_commit(app.db, project="app", sha=ghost, message="m", author="a <a@b>", proposal_id=None,
                       run_id=dead)  # fmt: skip
    records.add_commit(app.db, project="app", sha="e" * 40, message="m", author="a <a@b>", proposal_id=pid,
                       run_id=dead)  # fmt: skip
    records.transition(app.db, pid, "committed", actor="pimainteno")
    with pipeline.project_lock(app, project) as locked:
        assert locked
        pipeline.recover(app, project)
    assert app.db["runs"].get(dead)["status"] == "interrupted"
    assert records.unpushed(app.db, "app") == []
    assert records.get_proposal(app.db, pid).status == "failed"


def test_the_project_lock_admits_one_run(tmp_path: Path) -> None:
    app = configure(tmp_path)
    with pipeline.project_lock(app, app.project("app")) as locked:
        assert locked
        assert pipeline.run(app, Request("app")) == RunOutcome("app", "already-running")


def test_a_request_is_the_trigger_it_came_from_and_outcomes_are_values() -> None:
    heal = Request.from_trigger(Trigger("app", kind="heal", source="watch", reason="r", failure_id=4, proposal_id=9))
    assert heal == Request("app", kind="heal", source="watch", reason="r", failure_id=4)
    apply = Request.from_trigger(Trigger("app", kind="apply", source="dashboard", failure_id=4, proposal_id=9))
    assert (apply.proposal_id, apply.failure_id) == (9, None)
    outcome = RunOutcome("app", "ok", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.status = "failed"  # type: ignore[misc]
    assert outcome.but(status="rolled_back").status == "rolled_back" and outcome.status == "ok"
    codes = [RunOutcome("a", "rejected", exit_code=errors.BAD_INPUT),
             RunOutcome("b", "rolled_back", exit_code=errors.VALIDATION_FAILED)]  # fmt: skip
    assert pipeline.exit_code(codes) == errors.VALIDATION_FAILED
    assert pipeline.exit_code([*codes, RunOutcome("c", "failed", exit_code=errors.TOOL_FAILED)]) == errors.TOOL_FAILED
    assert pipeline.exit_code([RunOutcome("d", "nothing")]) == errors.OK
    assert os.environ.get("PIMAINTENO_ACTIVE") is None


def test_git_makes_pimaintenos_commit_fast_forwards_it_and_can_undo_that(tmp_path: Path) -> None:
    from pimainteno import git

    repo = make_repo(tmp_path / "app", {"x.txt": "old\n"})
    (repo / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\nexit 1\n")  # skipped: --no-verify
    (repo / ".git" / "hooks" / "pre-commit").chmod(0o755)
    before = git.head(repo)
    with git.temporary_worktree(repo, tmp_path / "state", "t") as wt:
        (wt / "x.txt").write_text("new\n")
        git.git(wt, "add", "x.txt")
        sha = git.make_commit(wt, git.commit_message("Use the new value", 7), "pimainteno <pm@host>")
    assert run_git(repo, "log", "-1", "--format=%an <%ae>|%B", sha) == (
        "pimainteno <pm@host>|Use the new value\n\nPimainteno-Proposal: 7\n\n"
    )
    git.fast_forward(repo, sha)
    assert git.head(repo) == sha and (repo / "x.txt").read_text() == "new\n"
    assert git.undo_fast_forward(repo, sha, before) and git.head(repo) == before
    assert (repo / "x.txt").read_text() == "old\n"
    assert not git.undo_fast_forward(repo, sha, before)  # HEAD is not the commit any more: nothing done
    git.fast_forward(repo, sha)
    with git.temporary_worktree(repo, tmp_path / "state", "r") as wt:
        revert = git.revert_commit(wt, sha, "Revert it\n", "pimainteno <pm@host>")
    git.fast_forward(repo, revert)
    assert (repo / "x.txt").read_text() == "old\n" and git.is_ancestor(repo, sha)
    with git.temporary_worktree(repo, tmp_path / "state", "d", rev=before) as wt:
        (wt / "y.txt").write_text("made on the old HEAD\n")
        git.git(wt, "add", "y.txt")
        diverged = git.make_commit(wt, git.commit_message("Add y", None), "pimainteno <pm@host>")
    head = git.head(repo)
    with pytest.raises(git.GitError, match="merge"):
        git.fast_forward(repo, diverged)  # not a fast-forward: refused, nothing changed
    assert git.head(repo) == head and not (repo / "y.txt").exists()


def test_a_step_the_tests_rejected_is_recorded_rejected_not_failed(tmp_path: Path) -> None:
    app = configure(tmp_path, test=["sh", "-c", "echo 1 test failed; exit 1"])
    config = tmp_path / "PiMainteno.toml"
    config.write_text(config.read_text() + "retries = 0\n")  # the failing attempt is the last: its error ends the run
    app = App(str(config))
    outcome = pipeline.run(app, Request("app"))
    assert outcome.status == "rejected"
    steps = json.loads(app.db["runs"].get(outcome.run_id)["steps"])
    validate = [s for s in steps if s["step"] == "validate"][-1]  # the last attempt, whose failure ends the run
    assert validate["outcome"] == "rejected" and "tests failed" in validate["detail"]
