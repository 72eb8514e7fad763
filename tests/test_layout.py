"""The package's shape: commands never import each other, no import circle, no module past 400 lines."""

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


TESTS = Path(__file__).parent
# Commands whose tests live elsewhere, and where: a real systemd, a browser or a whole flow (the
# first hour, the fleet, notifications) is the point of those files.
TESTED_ELSEWHERE = {
    "add": "commands/test_onboard.py",
    "remove": "commands/test_onboard.py",
    "dashboard": "dashboard/test_browser.py",
    "heal": "systemd/test_heal.py",
    "watch": "systemd/test_watch.py",
    "restart": "systemd/test_restart.py",
    "install_systemd": "systemd/test_units.py",
    "fleet": "test_fleet.py",
    "replicate": "test_fleet.py",
    "notify": "test_notify.py",
}


def test_every_command_has_its_test_file() -> None:
    verbs = {p.stem for p in COMMANDS.glob("*.py") if p.stem != "__init__"}
    missing = sorted(v for v in verbs - set(TESTED_ELSEWHERE) if not (TESTS / "commands" / f"test_{v}.py").exists())
    assert missing == [], f"add tests/commands/test_<verb>.py for: {missing}"
    stale = sorted(v for v in TESTED_ELSEWHERE if v not in verbs or (TESTS / "commands" / f"test_{v}.py").exists())
    assert stale == [], f"remove these from TESTED_ELSEWHERE (gone, or they have their own file now): {stale}"
    for verb, where in TESTED_ELSEWHERE.items():
        text = (TESTS / where).read_text()
        cli_name = verb.replace("_", "-")
        assert f'"{cli_name}"' in text or f"commands.{verb}" in text, f"{where} does not test {verb}"


def test_the_package_modules_named_in_issue_11_have_their_test_files() -> None:
    for name in ("test_git.py", "test_records.py", "test_config.py", "test_pipeline.py"):
        assert (TESTS / name).exists(), f"tests/{name} is missing"


# --- the suite itself: in CI nothing may pass by not running -------------------------------------


def run_pytest(tmp_path: Path, body: str, *args: str, ci: bool) -> int:
    import os
    import subprocess
    import sys

    (tmp_path / "test_inner.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(TESTS.parent)}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # a second of plugin imports the inner run does not need
    if ci:
        env["CI"] = "1"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
    argv += ["--rootdir", str(tmp_path), str(tmp_path / "test_inner.py"), *args]
    return subprocess.run(argv, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=120).returncode


SKIPS = "import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('no codex here')\n\ndef test_ok():\n    pass\n"


def test_in_ci_a_skipped_test_fails_the_session(tmp_path: Path) -> None:
    assert run_pytest(tmp_path, SKIPS, ci=False) == 0
    assert run_pytest(tmp_path, SKIPS, ci=True) == 1
    assert run_pytest(tmp_path, SKIPS, "-p", "xdist", "-n", "2", ci=True) == 1  # with workers, as `make test`


def test_no_tests_ran_is_a_failure_and_make_test_keeps_pytests_status(tmp_path: Path) -> None:
    assert run_pytest(tmp_path, SKIPS, "-k", "nothing_matches", ci=True) == 5
    recipe = (TESTS.parent / "Makefile").read_text().split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    pytest_lines = [line.strip() for line in recipe.splitlines() if "pytest" in line]
    assert pytest_lines and all("||" not in line and not line.startswith("-") for line in pytest_lines), recipe
    assert "exec make test" in (TESTS.parent / ".ci" / "run").read_text()


# --- no import circle (issue 11): every import counts, lazy ones too; `if TYPE_CHECKING:` does not --


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_outside_type_checking(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the `else:` of a TYPE_CHECKING block runs
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_edges(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules one module imports at run time.

    `from pkg import sub` is an edge to `pkg.sub` and to `pkg` too (as the issue counts it): a package
    whose `__init__` imports its modules is not imported back through by them.
    """
    is_package = path.name == "__init__.py"
    edges: set[str] = set()
    for node in _imports_outside_type_checking(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
            names: list[str] = []
        else:
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module]
            names = [f"{module}.{alias.name}" for alias in node.names]
        for target in targets + names:
            if target in known:
                edges.add(target)
    edges.discard(name)
    return edges


def import_graph(package: Path) -> dict[str, set[str]]:
    paths = {module_name(p, package.parent): p for p in sorted(package.rglob("*.py"))}
    known = set(paths)
    return {name: import_edges(path, name, known) for name, path in paths.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (a module importing itself is skipped)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_package_has_no_import_circle() -> None:
    cycles = import_cycles(import_graph(PACKAGE))
    assert cycles == [], "import circles (move the shared code down a layer): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_circle_check_sees_lazy_imports_and_submodules_but_not_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pimainteno"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pimainteno.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("import pimainteno.a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pimainteno import a\n")
    edges = import_graph(pkg)
    assert edges["pimainteno.d"] == set()
    assert import_cycles(edges) == [["pimainteno.a", "pimainteno.sub.b", "pimainteno.sub.c"]]
