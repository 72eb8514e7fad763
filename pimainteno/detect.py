"""Find a project's test command from what the project has (a small stand-in; see issue 12).

The sandbox branch owns the full version of this module with the same function; this one covers
what onboarding needs: pytest, tox, nox, npm, cargo, go and a Makefile `test`/`check` target.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

_MAKE_TARGET = re.compile(r"^(test|check)\s*:(?!=)", re.MULTILINE)


def detect_test_command(path: Path) -> tuple[str, str] | None:
    """``(command, how it was found)`` for the project at ``path``, or None."""
    path = Path(path)
    pyproject = path / "pyproject.toml"
    if pyproject.is_file() and "[tool.pytest" in pyproject.read_text(errors="replace"):
        return "python -m pytest -q", "pyproject.toml has [tool.pytest.ini_options]"
    for name in ("pytest.ini", "conftest.py"):
        if (path / name).is_file():
            return "python -m pytest -q", f"{name} exists"
    if (path / "tox.ini").is_file():
        return "tox", "tox.ini exists"
    if (path / "noxfile.py").is_file():
        return "nox", "noxfile.py exists"
    package = path / "package.json"
    if package.is_file():
        try:
            scripts = json.loads(package.read_text()).get("scripts") or {}
        except (ValueError, AttributeError):
            scripts = {}
        if isinstance(scripts, dict) and scripts.get("test"):
            return "npm test", 'package.json has a "test" script'
    if (path / "Cargo.toml").is_file():
        return "cargo test", "Cargo.toml exists"
    if (path / "go.mod").is_file():
        return "go test ./...", "go.mod exists"
    for name in ("Makefile", "makefile", "GNUmakefile"):
        makefile = path / name
        if makefile.is_file():
            found = _MAKE_TARGET.search(makefile.read_text(errors="replace"))
            if found:
                return f"make {found.group(1)}", f"{name} has a {found.group(1)!r} target"
    if (path / "tests").is_dir() and importlib.util.find_spec("pytest") is not None:
        return "python -m pytest -q", "a tests/ directory, and pytest is installed"
    return None
