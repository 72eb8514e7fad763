"""Test command detection from what a project has (real files, real interpreters)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pimainteno.detect import detect_test_command


def project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def venv_with_pytest(root: Path, name: str = ".venv") -> None:
    """A project venv whose python can import pytest (this test run's interpreter has it)."""
    (root / name / "bin").mkdir(parents=True)
    (root / name / "bin" / "python").symlink_to(sys.executable)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"pytest.ini": "[pytest]\n"}, ("python3 -m pytest", "pytest.ini")),
        ({"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n"},
         ("python3 -m pytest", "[tool.pytest.ini_options] in pyproject.toml")),
        ({"setup.cfg": "[metadata]\nname = x\n\n[tool:pytest]\ntestpaths = tests\n"},
         ("python3 -m pytest", "[tool:pytest] in setup.cfg")),
        ({"tests/test_x.py": ""}, ("python3 -m pytest", "a tests/ directory")),
        ({"tox.ini": "[tox]\n"}, ("tox", "tox.ini")),
        ({"noxfile.py": ""}, ("nox", "noxfile.py")),
        ({"package.json": '{"scripts": {"test": "jest"}}'}, ("npm test", 'the "test" script in package.json')),
        ({"Cargo.toml": "[package]\nname = 'x'\n"}, ("cargo test", "Cargo.toml")),
        ({"go.mod": "module example.com/x\n"}, ("go test ./...", "go.mod")),
        ({"Makefile": "all:\n\ttrue\ntest: all\n\t./run-tests\n"}, ("make test", "the `test` target in Makefile")),
        ({"Makefile": "check:\n\t./run-checks\n"}, ("make check", "the `check` target in Makefile")),
    ],
)  # fmt: skip
def test_each_kind_of_project(tmp_path: Path, files: dict[str, str], expected: tuple[str, str]) -> None:
    assert detect_test_command(project(tmp_path, files)) == expected


def test_the_projects_own_venv_is_used_when_it_has_pytest(tmp_path: Path) -> None:
    root = project(tmp_path, {"pyproject.toml": "[tool.pytest.ini_options]\n", "tests/test_x.py": ""})
    venv_with_pytest(root, "venv")
    assert detect_test_command(root) == (
        "venv/bin/python -m pytest",
        "[tool.pytest.ini_options] in pyproject.toml; pytest is installed in venv/",
    )


def test_a_venv_without_pytest_is_not_used(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_x.py": ""})
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    (root / ".venv" / "bin" / "python").chmod(0o755)
    assert detect_test_command(root) == ("python3 -m pytest", "a tests/ directory")


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"README.md": "# nothing to test\n"},
        {"package.json": '{"scripts": {"test": "echo \\"Error: no test specified\\" && exit 1"}}'},
        {"package.json": "not json"},
        {"pyproject.toml": "[project]\nname = 'x'\n"},
        {"pyproject.toml": "this is [not toml"},
        {"Makefile": "all:\n\ttrue\nTEST := 1\ntests:\n\ttrue\n"},
    ],
)
def test_nothing_found_is_none(tmp_path: Path, files: dict[str, str]) -> None:
    assert detect_test_command(project(tmp_path, files)) is None


def test_python_wins_over_make_and_the_order_is_stable(tmp_path: Path) -> None:
    root = project(tmp_path, {"Makefile": "test:\n\tpytest\n", "pytest.ini": "[pytest]\n", "go.mod": "module x\n"})
    assert detect_test_command(root) == ("python3 -m pytest", "pytest.ini")
