"""A small src-layout package installed with `pip install -e .` in its own venv inside the project:
the set-up in which an unsandboxed validation tested the main checkout instead of the patch (issue 12).
Built offline: the venv sees the system's setuptools and wheel (scripts/system-deps.sh installs them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import GIT_ENV, make_repo

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinypkg"
version = "0.1"

[tool.setuptools.packages.find]
where = ["src"]
"""
TEST_MODULE = """\
import unittest

import tinypkg


class EncodeTest(unittest.TestCase):
    def test_encode(self):
        self.assertEqual(tinypkg.encode("ab"), "AB")
"""
INIT = "src/tinypkg/__init__.py"


def _builder() -> str | None:
    """A python3 that can build an editable install without the network (setuptools + wheel)."""
    for python in ("/usr/bin/python3", "python3"):
        check = subprocess.run([python, "-c", "import setuptools, wheel"], capture_output=True, check=False)
        if check.returncode == 0:
            return python
    return None


BUILDER = _builder()


def editable_package(root: Path) -> Path:
    """``root/tinypkg``: a git repository whose venv/ has it installed editable; skips without a builder."""
    if BUILDER is None:
        pytest.skip("an editable install offline needs python3-setuptools and python3-wheel (scripts/system-deps.sh)")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in GIT_ENV.items():
            mp.setenv(key, value)
        mp.setenv("HOME", str(root))
        mp.setenv("GIT_CONFIG_GLOBAL", os.devnull)
        project = make_repo(root / "tinypkg", {
            "pyproject.toml": PYPROJECT, INIT: "def encode(text):\n    return text.upper()\n",
            "tests/__init__.py": "", "tests/test_tinypkg.py": TEST_MODULE,
            ".gitignore": "venv/\n*.egg-info/\n__pycache__/\n",
        })  # fmt: skip
        subprocess.run(
            [BUILDER, "-m", "venv", "--system-site-packages", str(project / "venv")], check=True, timeout=120
        )
        subprocess.run(
            [str(project / "venv/bin/pip"), "install", "--quiet", "--no-deps", "--no-build-isolation",
             "--no-cache-dir", "--no-input", "-e", str(project)],
            check=True, timeout=300, capture_output=True, env={**os.environ, "PIP_NO_INDEX": "1"},
        )  # fmt: skip
    return project
