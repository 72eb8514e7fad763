"""A stranger's first hour: init, add, remove on the host's one configuration, and the README's path
played end to end on two real repositories (a pull in each, drain, status)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pimainteno import config, errors
from pimainteno.cli import cli
from tests.conftest import make_repo, run_git

PYTHON_APP = {
    ".gitignore": "__pycache__/\n.pytest_cache/\n",
    "calc.py": "import os\n\n\ndef add(a, b):\n    return a + b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}
MAKE_APP = {
    "Makefile": "test:\n\tpython -c 'import tool; assert tool.double(2) == 4'\n",
    "tool.py": "import sys\n\n\ndef double(x):\n    return 2 * x\n",
}


@pytest.fixture
def host(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No --config, no PIMAINTENO_CONFIG: the search order decides, as for a new user. PATH has this
    Python (with pytest and ruff) and the system's tools, not codex."""
    monkeypatch.delenv("PIMAINTENO_CONFIG")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin")
    work = isolated / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # never the checkout, whose ./PiMainteno.toml would come first
    return isolated / "home" / ".config" / "pimainteno" / "PiMainteno.toml"


def cli_ok(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def published(tmp_path: Path, name: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A project with a bare remote it was pushed to, as a clone of someone's repository would be."""
    repo = make_repo(tmp_path / name, files)
    remote = tmp_path / f"{name}.git"
    run_git(tmp_path, "init", "-q", "--bare", str(remote))
    run_git(repo, "remote", "add", "origin", str(remote))
    run_git(repo, "push", "-q", "-u", "origin", "main")
    return repo, remote


def test_init_writes_the_host_configuration_once_and_never_into_a_project(host: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cfg = config.load(host)
    assert cfg.projects == () and cfg.database.is_file()
    assert cfg.llm.provider == "command" and cfg.llm.command == "ruff check --fix --quiet ."  # no codex on PATH
    assert "# codex was not found on PATH" in host.read_text()
    before = host.read_bytes()
    repo = make_repo(tmp_path / "my app")
    cli_ok("init", str(repo))  # a second init keeps the file and adds the repository
    after = host.read_text()
    assert after.startswith(before.decode()) and "\n[[project]]\n" in after
    assert [(p.name, p.path) for p in config.load(host).projects] == [("my-app", repo)]
    assert run_git(repo, "status", "--porcelain", "--ignored") == ""  # nothing written into the project
    assert not (Path.cwd() / "PiMainteno.toml").exists()


def test_init_says_when_a_per_project_configuration_comes_first_here(host: Path) -> None:
    (Path.cwd() / "PiMainteno.toml").write_text("")  # an old per-project configuration, still loading
    result = cli_ok("init")
    assert (
        f"note: {Path.cwd() / 'PiMainteno.toml'} comes first in the search order here; pass --config {host}"
        in result.output
    )
    assert config.load(host).projects == ()


def test_remove_finds_a_project_by_its_relative_path(host: Path, tmp_path: Path) -> None:
    cli_ok("init")
    make_repo(host.parent / "near")
    with host.open("a") as f:
        f.write('\n[[project]]\npath = "near"   # relative to the configuration\n')
    assert [p.name for p in config.load(host).projects] == ["near"]
    cli_ok("remove", "near")
    assert config.load(host).projects == () and "near" not in host.read_text()


def test_init_with_codex_on_path_chooses_codex(host: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "codex").write_text("#!/bin/sh\necho codex-cli 0.169.0\n")
    (bin_dir / "codex").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    cli_ok("init")
    assert config.load(host).llm.provider == "codex"


def test_add_fills_each_key_with_where_it_came_from_and_keeps_the_users_comments(host: Path, tmp_path: Path) -> None:
    cli_ok("init")
    host.write_text(host.read_text().replace('schedule = "daily"', 'schedule = "0 3 * * *"  # my own note'))
    repo, _ = published(tmp_path, "webapp", PYTHON_APP)
    out = cli_ok("add", str(repo)).output
    assert out.splitlines()[0] == "added project webapp:"
    text = host.read_text()
    assert 'schedule = "0 3 * * *"  # my own note' in text
    assert text.endswith(
        "[[project]]\n"
        'name = "webapp" # from the directory name\n'
        f'path = "{repo}" # git rev-parse --show-toplevel\n'
        'branch = "main" # the branch checked out when added\n'
        'remote = "origin" # git remote\n'
        'test = "python3 -m pytest" # detected: a tests/ directory\n'
        '# unit = "webapp.service"   # the default; systemd does not know it (yet): name the service to restart\n\n'
    )
    project = config.load(host).project("webapp")
    assert (project.branch, project.remote, project.test, project.unit) == (
        "main",
        "origin",
        "python3 -m pytest",
        "webapp.service",
    )


def test_add_refuses_a_duplicate_name_or_path_and_changes_nothing(host: Path, tmp_path: Path) -> None:
    cli_ok("init")
    repo = make_repo(tmp_path / "app")
    cli_ok("add", str(repo))
    before = host.read_bytes()
    again = CliRunner().invoke(cli, ["add", str(repo), "--name", "other"])
    assert again.exit_code == errors.BAD_INPUT
    assert again.output == f"Error: {repo} is already in {host} as project 'app'\n"
    twin = make_repo(tmp_path / "elsewhere" / "app")
    clash = CliRunner().invoke(cli, ["add", str(twin)])
    assert clash.exit_code == errors.BAD_INPUT
    assert clash.output == f"Error: a project named 'app' is already in {host}; pass --name to choose another\n"
    assert host.read_bytes() == before
    cli_ok("add", str(twin), "--name", "app2")
    assert [p.name for p in config.load(host).projects] == ["app", "app2"]


def test_add_outside_a_repository_is_one_line(host: Path, tmp_path: Path) -> None:
    cli_ok("init")
    plain = tmp_path / "plain"
    plain.mkdir()
    result = CliRunner().invoke(cli, ["add", str(plain)])
    assert result.exit_code == errors.BAD_INPUT
    assert (
        result.output == f"Error: {plain} is not inside a git repository; `git init` it or give the repository's path\n"
    )


def test_remove_deletes_only_that_project_and_keeps_comments(host: Path, tmp_path: Path) -> None:
    cli_ok("init")
    one, two = make_repo(tmp_path / "one"), make_repo(tmp_path / "two")
    cli_ok("add", str(one))
    cli_ok("add", str(two))
    host.write_text(host.read_text().replace('name = "two"', 'name = "two"  # keep this one'))
    assert cli_ok("remove", "one").output == f"removed project one ({one}); its repository is untouched\n"
    text = host.read_text()
    assert 'name = "one"' not in text and 'name = "two"  # keep this one' in text
    assert "# Projects, one [[project]] table each" in text
    assert [p.name for p in config.load(host).projects] == ["two"]
    assert (one / ".git").is_dir()  # the repository is untouched
    unknown = CliRunner().invoke(cli, ["remove", "one"])
    assert unknown.exit_code == errors.BAD_INPUT
    assert unknown.output == "Error: unknown project 'one' (known: two)\n"


def test_the_readme_path_on_two_real_repositories(host: Path, tmp_path: Path) -> None:
    """init, add, projects, doctor, install-hook, a pull in each, drain, status — as the README says."""
    webapp, web_remote = published(tmp_path, "webapp", PYTHON_APP)
    tool, tool_remote = published(tmp_path, "tool", MAKE_APP)
    os.chdir(webapp)
    assert "added project webapp (" in cli_ok("init").output
    os.chdir(tmp_path / "work")
    assert (
        cli_ok("add", str(tool)).output.splitlines()[5]
        == '  test = "make test"  # detected: the `test` target in Makefile'
    )

    rows = json.loads(cli_ok("projects", "--json").stdout)
    assert [(r["name"], r["test"], r["problem"]) for r in rows] == [
        ("webapp", "python3 -m pytest", None),
        ("tool", "make test", None),
    ]

    doctor = CliRunner().invoke(cli, ["doctor", "--json"], catch_exceptions=False)
    checks = json.loads(doctor.stdout)
    not_ok = {(c["project"], c["name"]): c["status"] for c in checks if c["status"] != "ok"}
    # expected here: no systemd as PID 1 (the units are unknown, the bus is offline); nothing to fix
    assert set(not_ok) <= {("webapp", "unit"), ("tool", "unit"), (None, "systemd"), (None, "pystemd")}
    assert "fail" not in not_ok.values() and doctor.exit_code == 0
    assert {(c["project"], c["name"]) for c in checks} >= {
        (None, "configuration"), (None, "database"), ("webapp", "remote"), ("webapp", "push"),
        ("tool", "test command"), (None, "fixer"), (None, "bubblewrap"), (None, "dashboard address"),
    }  # fmt: skip

    for name, remote in (("webapp", web_remote), ("tool", tool_remote)):
        cli_ok("install-hook", name)
        colleague = tmp_path / f"{name}-colleague"
        run_git(tmp_path, "clone", "-q", str(remote), str(colleague))
        (colleague / "NOTES.md").write_text("a colleague's change\n")
        run_git(colleague, "add", "NOTES.md")
        run_git(colleague, "commit", "-q", "-m", "notes")
        run_git(colleague, "push", "-q", "origin", "main")
        project = webapp if name == "webapp" else tool
        pulled = subprocess.run(
            ["git", "-C", str(project), "pull", "-q", "--no-rebase"], capture_output=True, text=True, timeout=60
        )
        assert pulled.stderr == f"pimainteno: queued a run for {name}\n"

    drained = cli_ok("drain", "--json")
    records = [json.loads(line) for line in drained.stdout.splitlines()]
    assert sorted((r["project"], r["status"]) for r in records) == [("tool", "done"), ("webapp", "done")]
    for repo, remote, fixed in ((webapp, web_remote, "calc.py"), (tool, tool_remote, "tool.py")):
        assert run_git(repo, "rev-parse", "HEAD") == run_git(remote, "rev-parse", "main")  # pushed
        assert run_git(repo, "log", "-1", "--format=%an") == "pimainteno\n"
        assert "import " not in (repo / fixed).read_text().splitlines()[0]  # the unused import is gone
        assert run_git(repo, "status", "--porcelain") == ""

    status = json.loads(cli_ok("status", "--json").stdout)
    assert sorted((r["project"], r["status"]) for r in status["runs"]) == [("tool", "ok"), ("webapp", "ok")]
    assert status["queue"]["pending"] == []


@pytest.mark.slow
def test_pip_install_needs_no_compiler_and_the_demo_runs_from_it(tmp_path: Path) -> None:
    """`pip install .` on a machine without libsystemd headers or a compiler, then `pimainteno demo`."""
    from tests.conftest import REPO_ROOT

    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    files = run_git(REPO_ROOT, "ls-files", "-z").split("\0")
    for name in filter(None, files):
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO_ROOT / name).read_bytes())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    no_compiler = {**os.environ, "PKG_CONFIG": "/bin/false", "CC": "/bin/false", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{source}[demo]"],
                             env=no_compiler, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([str(venv / "bin" / "pip"), "list"], capture_output=True, text=True, check=True).stdout
    assert "pystemd" not in listed and "tomlkit" in listed
    demo = subprocess.run([str(venv / "bin" / "pimainteno"), "demo", str(tmp_path / "demo")],
                          env={**no_compiler, "PYTHONPATH": ""}, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "\nResult: demo-app: ok — run #1 — proposal #1 — commit " in demo.stdout
    assert "pystemd" not in demo.stderr


def test_a_test_command_in_the_projects_venv_is_written_absolute_and_proves_a_run(host: Path, tmp_path: Path) -> None:
    """A run proves a patch in a fresh worktree, which has no untracked .venv: `.venv/bin/python`
    relative to it was "not found" (exit 127) on every run of a project set up the README way."""
    import site
    import sysconfig

    repo, remote = published(tmp_path, "webapp", {**PYTHON_APP, ".gitignore": ".venv/\n__pycache__/\n"})
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(repo / ".venv")], check=True, timeout=120)
    (site_dir,) = (repo / ".venv" / "lib").glob("python*/site-packages")
    shown = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]  # where this Python's pytest lives
    (site_dir / "test-tools.pth").write_text("\n".join(dict.fromkeys(shown)) + "\n")
    cli_ok("init")
    cli_ok("add", str(repo))
    python = repo / ".venv" / "bin" / "python"
    assert config.load(host).project("webapp").test == f"{python} -m pytest"
    result = cli_ok("run", "webapp")
    assert result.stdout.startswith("webapp: ok — run #1 — proposal #1 — commit ")
    assert run_git(remote, "log", "-1", "--format=%s").strip() == "Apply ruff fixes to calc.py"
