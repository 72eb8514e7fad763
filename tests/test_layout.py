"""The package's shape: commands never import each other, and no module grows past 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pimainteno

PACKAGE = Path(pimainteno.__file__).parent
COMMANDS = PACKAGE / "commands"
MAX_LINES = 400
# Modules allowed over the limit for now (none); the test fails when a listed one is short again.
STILL_LONG: set[str] = set()


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the commands package
                base = "pimainteno.commands" if node.level == 1 else "pimainteno"
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            if module in ("pimainteno.commands", "pimainteno"):  # `from pimainteno.commands import run`
                found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_commands_import_only_library_modules() -> None:
    offenders = {}
    for path in sorted(COMMANDS.glob("*.py")):
        siblings = sorted(
            m for m in imported_modules(path) if m == "pimainteno.commands" or m.startswith("pimainteno.commands.")
        )
        if siblings:
            offenders[path.name] = siblings
    assert offenders == {}, f"commands import other commands (move the shared code into the library): {offenders}"


def test_the_check_would_catch_a_command_importing_another(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from pimainteno.commands.run import run_many\n    from . import push\n")
    assert {"pimainteno.commands.run", "pimainteno.commands.push"} <= imported_modules(bad)


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert set(long) - STILL_LONG == set(), f"split these by concern: {long}"
    assert STILL_LONG - set(long) == set(), "these are short now: remove them from STILL_LONG"
