"""What a user reads after a by-hand step: nothing to apply is success with a hint, a refused merge
names the files in the way once, and counts say "1 file" (CliRunner, real git repositories)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

from pimainteno import errors
from pimainteno.cli import cli
from pimainteno.commands.demo import make_sample
from pimainteno.words import plural
from tests.conftest import run_git

PY = sys.executable


def configure(tmp_path: Path) -> Path:
    repo, _ = make_sample(tmp_path)
    fix = json.dumps([PY, "-m", "ruff", "check", "--fix", "--quiet", "--exit-zero", "."])
    tests = json.dumps([PY, "-m", "unittest", "discover", "-q"])
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\nprovider = "command"\ncommand = {fix}\n\n'
        f'[[project]]\nname = "app"\npath = "{repo}"\nbranch = "main"\ntest = {tests}\ntest_timeout = 60\n'
    )
    return repo


def invoke(*args: str, input: str | None = None):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_propose_then_apply_with_nothing_to_propose_is_success_with_a_hint(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    first = invoke("propose", "app")
    assert first.exit_code == 0 and first.stdout.startswith("# pimainteno project=app proposal=1")
    run_git(repo, "stash")  # nothing left to fix once the first proposal is set aside: commit its fix instead
    assert invoke("apply", input=first.stdout).exit_code == 0
    assert invoke("commit", "app", "-m", "Apply the fixer").exit_code == 0
    unchanged = invoke("propose", "app")
    assert (unchanged.exit_code, unchanged.stdout) == (0, "")
    assert "nothing to propose" in unchanged.stderr
    applied = invoke("apply", input=unchanged.stdout)
    assert applied.exit_code == 0, applied.stderr
    assert "nothing to apply: the patch is empty" in applied.stderr
    assert "--reason" in applied.stderr and "apply --proposal N" in applied.stderr
    assert "rejected" not in applied.stderr


def test_applying_one_file_says_one_file(tmp_path: Path) -> None:
    configure(tmp_path)
    patch = invoke("propose", "app")
    assert "proposal #1: 1 file, +" in patch.stderr
    applied = invoke("apply", input=patch.stdout)
    assert applied.exit_code == 0 and "applied and staged 1 file: demo_app/convert.py" in applied.stderr


def test_a_refused_merge_names_the_files_in_the_way_and_the_project_once(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    target = repo / "demo_app" / "convert.py"
    target.write_text(target.read_text() + "\n# my work in progress\n")  # the fixer's commit would overwrite it
    result = invoke("run", "app")
    assert result.exit_code == errors.TOOL_FAILED, result.stderr
    assert result.stdout.startswith("app: failed — run #1 — proposal #1 — could not fast-forward")
    error = result.stderr.strip().splitlines()[-1]
    assert error == (
        "pimainteno: app: could not fast-forward to the validated commit: local changes to demo_app/convert.py "
        "would be overwritten; commit, stash or remove them, the next run tries again (nothing was changed)"
    )
    assert target.read_text().endswith("# my work in progress\n")


def test_plural() -> None:
    assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]
    assert plural(1, "'diff --git' line") == "1 'diff --git' line"


def set_config(tmp_path: Path, old: str, new: str) -> None:
    path = tmp_path / "PiMainteno.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_missing_codex_points_at_doctor(tmp_path: Path) -> None:
    configure(tmp_path)
    set_config(tmp_path, 'provider = "command"', f'provider = "codex"\ncodex = "{tmp_path / "no-codex"}"')
    result = invoke("propose", "app")
    assert result.exit_code == errors.TOOL_FAILED
    assert result.stderr.strip().splitlines()[-1].endswith(f"; {errors.SEE_DOCTOR}")


def test_a_fixer_that_is_not_installed_is_an_error_pointing_at_doctor_not_nothing_to_do(tmp_path: Path) -> None:
    configure(tmp_path)
    set_config(tmp_path, "command = [", 'command = "no-such-fixer --fix ."\nold_command = [')
    set_config(tmp_path, "old_command = [", "# [")
    result = invoke("run", "app")
    assert result.exit_code == errors.TOOL_FAILED, result.stderr
    assert "the fixer did not start: " in result.stdout and "no-such-fixer: not found" in result.stdout
    assert result.stdout.rstrip().endswith(errors.SEE_DOCTOR)


def test_a_test_command_that_cannot_run_points_at_doctor(tmp_path: Path) -> None:
    configure(tmp_path)
    set_config(tmp_path, "test = [", 'test = "no-such-test-runner -q"\n# [')
    result = invoke("run", "app")
    assert result.exit_code == errors.TOOL_FAILED, result.stderr  # a set-up problem, not a verdict on the patch
    assert "the tests did not start (" in result.stdout and "no-such-test-runner: not found" in result.stdout
    assert errors.SEE_DOCTOR in result.stdout
    # the change is not remembered as failed: once the test command is fixed, a run tries it
    set_config(
        tmp_path, 'test = "no-such-test-runner -q"', f"test = {json.dumps([PY, '-m', 'unittest', 'discover', '-q'])}"
    )
    again = invoke("run", "app", "--reason", "the tests run now")
    assert again.exit_code == 0 and again.stdout.startswith("app: ok"), again.stdout + again.stderr


def test_an_unreachable_remote_points_at_doctor(tmp_path: Path) -> None:
    repo = configure(tmp_path)
    run_git(repo, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    result = invoke("run", "app")
    assert result.exit_code == errors.TOOL_FAILED, result.stderr
    assert "the commit stays local for the next run" in result.stdout
    assert result.stdout.rstrip().endswith(errors.SEE_DOCTOR)


def test_a_fixer_that_leaves_problems_it_cannot_fix_says_so(tmp_path: Path) -> None:
    configure(tmp_path)
    set_config(tmp_path, "command = [", 'command = "exit 1"\n# [')
    result = invoke("propose", "app")
    assert (result.exit_code, result.stdout) == (0, "")
    assert "nothing to propose: the command provider changed nothing (it exited 1: problems it cannot fix" in (
        result.stderr
    )
    again = invoke("propose", "app")
    assert "unchanged since the last check and no failure (--reason TEXT asks anyway)" in again.stderr
