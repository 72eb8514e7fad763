"""The worktree check, the commit built from the proposal, and empty test runs: real git, real runners."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pimainteno import git as g
from pimainteno import proof, sandbox
from pimainteno.errors import PatchRejected, ValidationFailed
from pimainteno.procs import CommandResult, run_command
from tests.conftest import make_repo, run_git

PATCH = """\
--- a/app.py
+++ b/app.py
@@ -1 +1 @@
-VALUE = 1
+VALUE = 2
--- /dev/null
+++ b/NEWS.md
@@ -0,0 +1 @@
+Value is now 2.
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "app", {"app.py": "VALUE = 1\n", "README.md": "# app\n"})


def verdict_after(project: Path, state: Path, command: str) -> str | None:
    """Apply PATCH in a worktree, run `command` there bare (no sandbox), return the check's verdict."""
    with g.temporary_worktree(project, state, "proof") as wt:
        g.git(wt, "apply", "--index", "-", input=PATCH)
        expected = proof.record(wt, PATCH)
        result = sandbox.run_tests(command, wt, project, 30, enabled=False)
        assert result.exit_status == 0, result.output
        try:
            proof.check_unchanged(wt, expected)
        except proof.RepositoryChanged as e:
            return str(e)
    return None


def test_tests_that_only_write_untracked_output_pass_the_check(project: Path, tmp_path: Path) -> None:
    assert verdict_after(project, tmp_path / "s", "mkdir -p build && echo o > build/out && cat app.py") is None


@pytest.mark.parametrize(
    ("command", "verdict"),
    [
        ("git -c user.name=x -c user.email=x@x commit -qam sneaky",
         "the tests changed the repository (a new commit: {sha} sneaky)"),
        ("echo evil > evil.yml && git add evil.yml", "the tests changed the repository (staged `evil.yml`)"),
        ("echo more >> README.md", "the tests changed the repository (`README.md`)"),
        ("rm app.py", "the tests changed the repository (`app.py`)"),
        ("chmod +x README.md", "the tests changed the repository (`README.md`)"),
        ("git checkout -q HEAD -- app.py", "the tests changed the repository (staged `app.py`)"),
        ("git branch sneaky", "the tests changed the repository (the ref refs/heads/sneaky)"),
        ("git tag v9", "the tests changed the repository (the ref refs/tags/v9)"),
        ("git config core.fsmonitor ./spy.sh", "the tests changed the repository (.git/config)"),
        ("printf '#!/bin/sh\\n' > $(git rev-parse --git-common-dir)/hooks/post-merge",
         "the tests changed the repository (.git/hooks/post-merge)"),
        ("rm .git", "the tests changed the repository (the worktree's `.git`)"),
    ],
)  # fmt: skip
def test_tests_that_change_the_repository_are_caught(project: Path, tmp_path: Path, command: str, verdict: str) -> None:
    said = verdict_after(project, tmp_path / "s", command)
    assert said is not None
    if "{sha}" in verdict:
        sha = said.split("a new commit: ")[1].split(" ")[0]
        verdict = verdict.format(sha=sha)
    assert said == verdict
    assert run_git(project, "rev-list", "--count", "main").strip() == "1"


def test_record_refuses_a_worktree_that_is_not_head_plus_the_patch(project: Path, tmp_path: Path) -> None:
    with g.temporary_worktree(project, tmp_path / "s", "proof") as wt:
        with pytest.raises(ValidationFailed, match="not HEAD \\+ the proposal before the tests"):
            proof.record(wt, PATCH)  # the patch was never applied
        g.git(wt, "apply", "-", input=PATCH)  # applied, but not staged: the new file is untracked
        with pytest.raises(ValidationFailed, match="not HEAD \\+ the proposal"):
            proof.record(wt, PATCH)


def test_a_patch_that_does_not_apply_is_rejected(project: Path) -> None:
    head = run_git(project, "rev-parse", "HEAD").strip()
    with pytest.raises(
        PatchRejected, match=f"^patch rejected: it does not apply at {head[:12]}: error: patch failed: app.py:1$"
    ):
        proof.expected_tree(project, head, PATCH.replace("-VALUE = 1", "-VALUE = 7"))


def test_the_commit_is_the_proposal_on_the_recorded_head_not_the_worktree(project: Path, tmp_path: Path) -> None:
    with g.temporary_worktree(project, tmp_path / "s", "proof") as wt:
        g.git(wt, "apply", "--index", "-", input=PATCH)
        expected = proof.record(wt, PATCH)
        # Whatever the worktree holds afterwards plays no part in the commit.
        (wt / "README.md").write_text("tampered\n")
        (wt / "junk.txt").write_text("junk\n")
        sha = proof.commit_proposal(wt, expected, PATCH, "Raise VALUE to 2\n", author="Bot <bot@example.com>")
    assert run_git(project, "rev-parse", f"{sha}^{{tree}}").strip() == expected.tree
    assert run_git(project, "rev-parse", f"{sha}^").strip() == expected.head
    shown = run_git(project, "show", "--format=%an <%ae>|%cn <%ce>|%s", "--name-status", sha)
    assert shown.splitlines()[0] == "Bot <bot@example.com>|Bot <bot@example.com>|Raise VALUE to 2"
    files = run_git(project, "show", "--format=", "--name-status", sha)
    assert sorted(files.split()) == ["A", "M", "NEWS.md", "app.py"]
    assert run_git(project, "show", f"{sha}:README.md") == "# app\n"
    # No ref moved and the project's files are as they were.
    assert run_git(project, "rev-parse", "main").strip() == expected.head
    assert (project / "app.py").read_text() == "VALUE = 1\n" and not (project / "NEWS.md").exists()


def test_a_commit_of_another_patch_than_the_proven_one_is_refused(project: Path, tmp_path: Path) -> None:
    with g.temporary_worktree(project, tmp_path / "s", "proof") as wt:
        g.git(wt, "apply", "--index", "-", input=PATCH)
        expected = proof.record(wt, PATCH)
    other = PATCH.replace("+VALUE = 2", "+VALUE = 3")
    with pytest.raises(ValidationFailed, match="differs from the one the tests proved"):
        proof.commit_proposal(project, expected, other, "x\n", author="Bot <bot@example.com>")


# --- a test command that ran no test -------------------------------------------------------------


def test_real_runners_that_ran_nothing_are_no_proof(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    unittest_run = run_command([sys.executable, "-m", "unittest", "discover", "-s", "."], empty, 60)
    assert proof.ran_no_tests(unittest_run) in (
        "unittest ran no tests (`Ran 0 tests`)",  # Python < 3.12 exits 0 here
    )
    pytest_run = run_command([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], empty, 60)
    assert pytest_run.exit_status == 5
    assert proof.ran_no_tests(pytest_run) == "pytest ran no tests (exit status 5)"


def test_a_real_run_with_a_test_is_a_proof(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text(
        "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self): pass\n"
    )
    for argv in ([sys.executable, "-m", "unittest", "-v", "test_one"], [sys.executable, "-m", "pytest", "-q",
                 "-p", "no:cacheprovider", "test_one.py"]):  # fmt: skip
        result = run_command(argv, tmp_path, 60)
        assert result.ok, result.output
        assert proof.ran_no_tests(result) is None


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n\n"
         "   Doc-tests app\n\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored\n",
         "cargo test ran no tests (0 passed, 0 failed)"),
        ("running 2 tests\ntest result: ok. 2 passed; 0 failed; 0 ignored\n   Doc-tests app\n"
         "test result: ok. 0 passed; 0 failed; 0 ignored\n", None),
        ("?   \texample.com/app\t[no test files]\n?   \texample.com/app/cmd\t[no test files]\n",
         "go test found no test files"),
        ("?   \texample.com/app/cmd\t[no test files]\nok  \texample.com/app\t0.002s\n", None),
        ("No tests found, exiting with code 0\nRun with `--passWithNoTests` to exit with code 0\n",
         "jest found no tests"),
        ("Error: No test files found: \"test\"\n", "mocha found no tests"),
        ("\nno tests ran in 0.01s\n", "pytest ran no tests"),
        ("test_no_tests_ran_in_0s PASSED\n1 passed in 0.01s\n", None),
    ],
)  # fmt: skip
def test_empty_runs_of_other_runners_are_recognised(output: str, reason: str | None) -> None:
    # Outputs as these runners print them (cargo, go, jest and mocha are not installed here).
    assert proof.ran_no_tests(CommandResult(["runner"], 0, output, 0.1)) == reason
