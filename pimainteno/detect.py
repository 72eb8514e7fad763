"""Find a project's test command from what the project has (for `init` and `add`).

Returns the command and how it was found, for the comment written next to it in the configuration.
The first match wins, in the order below: a Python test setup, then other ecosystems, then make.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import tomllib
from pathlib import Path

VENVS = (".venv", "venv")
_MAKE_TARGET = re.compile(r"^(test|check)\s*:(?!=)", re.M)


def detect_test_command(path: Path) -> tuple[str, str] | None:
    """(command, how it was found), or None when the project shows no test command."""
    for find in (_pytest, _tox, _nox, _npm, _cargo, _go, _make):
        found = find(path)
        if found:
            return found
    return None


def _pytest(path: Path) -> tuple[str, str] | None:
    why = _pytest_config(path)
    if why is None and (path / "tests").is_dir():
        why = "a tests/ directory"
    if why is None:
        return None
    for venv in VENVS:
        python = path / venv / "bin" / "python"
        if python.is_file() and _imports(python, "pytest"):
            return f"{venv}/bin/python -m pytest", f"{why}; pytest is installed in {venv}/"
    return "python3 -m pytest", why


def _pytest_config(path: Path) -> str | None:
    if (path / "pytest.ini").is_file():
        return "pytest.ini"
    pyproject = path / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            data = {}
        if "pytest" in data.get("tool", {}):
            return "[tool.pytest.ini_options] in pyproject.toml"
    setup_cfg = path / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(setup_cfg)
        except configparser.Error:
            return None
        if parser.has_section("tool:pytest"):
            return "[tool:pytest] in setup.cfg"
    return None


def _imports(python: Path, module: str) -> bool:
    try:
        done = subprocess.run(
            [str(python), "-c", f"import {module}"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, start_new_session=True,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _tox(path: Path) -> tuple[str, str] | None:
    return ("tox", "tox.ini") if (path / "tox.ini").is_file() else None


def _nox(path: Path) -> tuple[str, str] | None:
    return ("nox", "noxfile.py") if (path / "noxfile.py").is_file() else None


def _npm(path: Path) -> tuple[str, str] | None:
    package = path / "package.json"
    if not package.is_file():
        return None
    try:
        scripts = json.loads(package.read_text()).get("scripts") or {}
    except (ValueError, OSError, AttributeError):
        return None
    test = scripts.get("test") if isinstance(scripts, dict) else None
    # npm init's placeholder fails on purpose: it is no test command
    if not isinstance(test, str) or not test.strip() or "no test specified" in test:
        return None
    return "npm test", 'the "test" script in package.json'


def _cargo(path: Path) -> tuple[str, str] | None:
    return ("cargo test", "Cargo.toml") if (path / "Cargo.toml").is_file() else None


def _go(path: Path) -> tuple[str, str] | None:
    return ("go test ./...", "go.mod") if (path / "go.mod").is_file() else None


def _make(path: Path) -> tuple[str, str] | None:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        makefile = path / name
        if makefile.is_file():
            try:
                targets = _MAKE_TARGET.findall(makefile.read_text(errors="replace"))
            except OSError:
                return None
            for target in ("test", "check"):
                if target in targets:
                    return f"make {target}", f"the `{target}` target in {name}"
            return None
    return None
