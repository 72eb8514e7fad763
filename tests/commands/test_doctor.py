"""`pimainteno doctor` on real set-ups: what it finds, the line it prints, and its exit status."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pimainteno import errors
from pimainteno.cli import cli
from tests.conftest import make_repo, run_git, write_config


def doctor(*args: str) -> tuple[int, dict[tuple[str | None, str], dict]]:
    result = CliRunner().invoke(cli, ["doctor", "--json", *args], catch_exceptions=False)
    checks = json.loads(result.stdout)
    return result.exit_code, {(c["project"], c["name"]): c for c in checks}


def lines(*args: str) -> list[str]:
    return CliRunner().invoke(cli, ["doctor", *args], catch_exceptions=False).stdout.splitlines()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "app", {"Makefile": "test:\n\ttrue\n", "app.py": "X = 1\n"})
    remote = tmp_path / "app.git"
    run_git(tmp_path, "init", "-q", "--bare", str(remote))
    run_git(repo, "remote", "add", "origin", str(remote))
    run_git(repo, "push", "-q", "origin", "main")
    return repo


def configure(tmp_path: Path, repo: Path, extra: str = "", llm: str = 'provider = "command"\ncommand = "true"') -> None:
    write_config(
        tmp_path,
        f'[llm]\n{llm}\n\n[[project]]\nname = "app"\npath = "{repo}"\nbranch = "main"\nrestart = false\n{extra}',
    )


def test_a_broken_configuration_is_the_one_check_and_fails(tmp_path: Path) -> None:
    write_config(tmp_path, "[llm]\nprovider = 'gpt'\n")
    code, checks = doctor()
    assert code == errors.VALIDATION_FAILED
    assert list(checks) == [(None, "configuration")]
    assert checks[None, "configuration"]["detail"].endswith("llm.provider: expected one of codex, command, got 'gpt'")


def test_a_healthy_project_is_all_ticks(tmp_path: Path, repo: Path) -> None:
    configure(tmp_path, repo, 'test = "make test"\n')
    code, checks = doctor("app")
    project = {name: c["status"] for (p, name), c in checks.items() if p == "app"}
    assert project == {"path": "ok", "branch": "ok", "remote": "ok", "push": "ok", "working tree": "ok",
                       "test command": "ok", "unit": "ok"}  # fmt: skip
    assert checks["app", "test command"]["detail"] == "make test (make found; `make -n test` passes)"
    assert checks[None, "fixer"]["status"] == "ok"
    assert code == 0  # no ✗ here: systemd offline is advice while nothing watches units


def test_an_unreachable_remote_a_dirty_tree_and_no_test_command(tmp_path: Path, repo: Path) -> None:
    run_git(repo, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    (repo / "app.py").write_text("X = 2\n")
    configure(tmp_path, repo)
    code, checks = doctor()
    assert code == errors.VALIDATION_FAILED
    remote = checks["app", "remote"]
    assert remote["status"] == "fail" and remote["fix"] == "check the URL, the network and the credentials"
    assert remote["detail"].startswith(f"origin ({tmp_path / 'gone.git'}) did not answer: ")
    assert ("app", "push") not in checks
    assert checks["app", "working tree"]["status"] == "warn"
    test = checks["app", "test command"]
    assert (test["status"], test["fix"]) == ("warn", 'set test = "make test" (the `test` target in Makefile)')
    text = lines()
    assert f"✗ app: remote: {remote['detail']} — check the URL, the network and the credentials" in text


def test_a_test_module_that_is_not_installed_fails(tmp_path: Path, repo: Path) -> None:
    configure(tmp_path, repo, f'test = "{sys.executable} -m no_such_runner -q"\n')
    code, checks = doctor()
    assert code == errors.VALIDATION_FAILED
    assert checks["app", "test command"]["detail"] == (
        f"{sys.executable} -m no_such_runner -q: `{sys.executable} -c 'import no_such_runner'` fails: "
        "ModuleNotFoundError: No module named 'no_such_runner'"
    )


def test_a_test_command_that_is_not_installed_fails(tmp_path: Path, repo: Path) -> None:
    configure(tmp_path, repo, 'test = "CI=1 no-such-runner --all"\n')
    code, checks = doctor()
    assert code == errors.VALIDATION_FAILED
    assert checks["app", "test command"]["detail"] == "'no-such-runner' not found"


def test_an_editable_install_into_the_project_is_named(tmp_path: Path, repo: Path) -> None:
    # `setup.py develop`: an editable install that needs no network (pip's would fetch setuptools)
    (repo / "setup.py").write_text('from setuptools import setup\nsetup(name="app", version="0", py_modules=["app"])\n')
    venv = repo / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    develop = subprocess.run(
        [str(venv / "bin" / "python"), "setup.py", "-q", "develop"], cwd=repo, capture_output=True, timeout=300
    )
    assert develop.returncode == 0, develop.stderr
    configure(tmp_path, repo, 'test = ".venv/bin/python -c pass"\n')
    _, checks = doctor()
    found = checks["app", "editable install"]
    assert found["status"] == "ok"
    assert found["detail"] == (
        f"easy-install.pth in {next(venv.glob('lib/python*/site-packages'))} points into the project; "
        "fine: validation runs in the proof sandbox, which shows the patched tree there"
    )


def test_the_dashboard_secret_and_address(tmp_path: Path, repo: Path) -> None:
    configure(tmp_path, repo, llm='provider = "command"\ncommand = "true"\n\n[web]\nhost = "0.0.0.0"')
    state = Path(os.environ["PIMAINTENO_STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    (state / "dashboard-secret").write_text("x" * 64 + "\n")
    (state / "dashboard-secret").chmod(0o644)
    code, checks = doctor()
    assert checks[None, "dashboard secret"]["status"] == "fail"
    assert checks[None, "dashboard secret"]["fix"].startswith("others can read it and sign logins: `chmod 600 ")
    assert checks[None, "dashboard address"]["status"] == "warn"
    assert code == errors.VALIDATION_FAILED


@pytest.fixture
def codex_home_outside_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """codex refuses its sandbox helper under /tmp when bubblewrap is installed: keep it in /var/tmp."""
    home = Path(tempfile.mkdtemp(prefix="pimainteno-doctor-codex-", dir="/var/tmp"))
    monkeypatch.setenv("CODEX_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.codex
def test_the_real_codex_version_and_sandbox(
    tmp_path: Path, repo: Path, codex_bin: Path, codex_home_outside_tmp: Path
) -> None:
    configure(tmp_path, repo, llm=f'provider = "codex"\ncodex = "{codex_bin}"')
    _, checks = doctor()
    version = subprocess.run([str(codex_bin), "--version"], capture_output=True, text=True).stdout.split()[-1]
    assert checks[None, "codex"]["detail"].endswith(f"version {version}")
    assert checks[None, "codex"]["status"] == ("ok" if version in ("0.169.0", "0.170.0", "0.171.0") else "warn")
    if shutil.which("bwrap"):
        assert checks[None, "codex sandbox"] == {
            "name": "codex sandbox", "status": "ok", "detail": "`sandbox -- true` runs a command", "fix": "", "project": None,
        }  # fmt: skip


@pytest.mark.codex
def test_codex_home_under_tmp_is_named_as_the_cause(
    tmp_path: Path, repo: Path, codex_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not shutil.which("bwrap"):
        pytest.skip("codex refuses a CODEX_HOME under /tmp only when it uses the system bwrap")
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex-home"))
    (tmp_path / "codex-home").mkdir()
    configure(tmp_path, repo, llm=f'provider = "codex"\ncodex = "{codex_bin}"')
    code, checks = doctor()
    sandbox = checks[None, "codex sandbox"]
    assert sandbox["status"] == "fail" and code == errors.VALIDATION_FAILED
    assert sandbox["fix"].startswith(
        f"CODEX_HOME={tmp_path / 'codex-home'} is under /tmp, where codex refuses its helper"
    )


def test_a_codex_outside_the_tested_range_is_a_warning(tmp_path: Path, repo: Path) -> None:
    old = tmp_path / "old-codex"
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'codex-cli 0.150.2' && exit 0\nexit 0\n")
    old.chmod(0o755)
    configure(tmp_path, repo, llm=f'provider = "codex"\ncodex = "{old}"')
    _, checks = doctor()
    assert checks[None, "codex"]["status"] == "warn"
    assert checks[None, "codex"]["detail"] == (
        f"{old}: codex 0.150.2 is outside the range pimainteno is tested with (0.169.0 to 0.171.0); "
        "if runs misbehave, install @openai/codex@0.171.0"
    )
    # `status` says the same, as a warning line; its exit status stays 0
    from tests.conftest import run_cli

    status = run_cli("status")
    assert status.returncode == 0, status.stderr
    assert "warning    codex 0.150.2 is outside the range pimainteno is tested with (0.169.0 to 0.171.0)" in (
        status.stdout
    )
