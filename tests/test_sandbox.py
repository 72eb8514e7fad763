"""The proof sandbox on real projects: an editable src-layout package in its own venv, absolute paths,
hostile tests, hung tests. Real bubblewrap, real git, real processes."""

from __future__ import annotations

import secrets
import socket
import sys
import time
from pathlib import Path

import pytest

from pimainteno import git as g
from pimainteno import proof, sandbox
from pimainteno.procs import run_command
from tests.conftest import make_repo, run_git
from tests.editable import editable_package

PROBLEM = sandbox.problem()
needs_bwrap = pytest.mark.skipif(PROBLEM is not None, reason=f"the proof sandbox cannot run here: {PROBLEM}")


BREAKING = """\
--- a/src/tinypkg/__init__.py
+++ b/src/tinypkg/__init__.py
@@ -1,2 +1,2 @@
 def encode(text):
-    return text.upper()
+    return "broken"
"""
GOOD = """\
--- a/src/tinypkg/__init__.py
+++ b/src/tinypkg/__init__.py
@@ -1,2 +1,3 @@
 def encode(text):
-    return text.upper()
+    # upper-case, as the tests expect
+    return text.upper()
"""


@pytest.fixture(scope="module")
def editable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A src-layout package installed with `pip install -e .` in its own venv inside the project."""
    if PROBLEM is not None:
        pytest.skip(f"the proof sandbox cannot run here: {PROBLEM}")
    return editable_package(tmp_path_factory.mktemp("editable"))


def validate(project: Path, state: Path, patch: str, command: str, *, enabled: bool = True, timeout: float = 60):
    """Apply `patch` in a fresh worktree at HEAD, run `command` there; the result and the worktree check."""
    with g.temporary_worktree(project, state, "validate") as wt:
        if patch:
            g.git(wt, "apply", "--index", "-", input=patch)
        expected = proof.record(wt, patch)
        result = sandbox.run_tests(command, wt, project, timeout, enabled=enabled)
        try:
            proof.check_unchanged(wt, expected)
            changed = None
        except proof.RepositoryChanged as e:
            changed = str(e)
    return result, changed


@needs_bwrap
def test_a_breaking_patch_fails_in_the_sandbox_though_it_passes_bare(editable: Path, tmp_path: Path) -> None:
    absolute = f"{editable}/venv/bin/python -m unittest discover -s tests -v"
    bare, _ = validate(editable, tmp_path / "state", BREAKING, absolute, enabled=False)
    # The bug the sandbox exists for: bare, the editable install imports the unpatched checkout.
    assert bare.ok, bare.output
    assert "Ran 1 test" in bare.output
    boxed, changed = validate(editable, tmp_path / "state", BREAKING, absolute)
    assert boxed.exit_status == 1 and "AssertionError: 'broken' != 'AB'" in boxed.output
    assert changed is None
    # The relative form works too: the project's venv is shown at its place in the worktree.
    relative, _ = validate(editable, tmp_path / "state", BREAKING, "venv/bin/python -m unittest discover -s tests")
    assert relative.exit_status == 1 and "'broken' != 'AB'" in relative.output


@needs_bwrap
def test_a_good_patch_passes_in_the_sandbox(editable: Path, tmp_path: Path) -> None:
    result, changed = validate(editable, tmp_path / "state", GOOD, "venv/bin/python -m unittest discover -s tests")
    assert result.ok, result.output
    assert "Ran 1 test" in result.output and "pimainteno-sandbox-started" not in result.output
    assert changed is None
    assert proof.ran_no_tests(result) is None


@needs_bwrap
def test_an_absolute_path_in_the_config_sees_the_patched_file(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "app", {"settings.ini": "mode = safe\n"})
    command = f"grep -q 'mode = safe' {project}/settings.ini"
    patch = "--- a/settings.ini\n+++ b/settings.ini\n@@ -1 +1 @@\n-mode = safe\n+mode = unsafe\n"
    bare, _ = validate(project, tmp_path / "state", patch, command, enabled=False)
    boxed, _ = validate(project, tmp_path / "state", patch, command)
    assert bare.ok and boxed.exit_status == 1
    assert (project / "settings.ini").read_text() == "mode = safe\n"


@needs_bwrap
def test_hostile_tests_leave_the_host_untouched(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "app")
    mark = secrets.token_hex(6)
    host_tmp = Path(f"/tmp/pimainteno-sandbox-probe-{mark}")
    outside = Path(f"/var/tmp/pimainteno-sandbox-probe-{mark}")  # the host, read-only inside
    home = Path.home()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        port = server.getsockname()[1]
        script = (
            f"echo x > $HOME/x-{mark} && echo home-written; "
            f"echo x > {host_tmp} && echo tmp-written; "
            f"echo x > {project}/escaped-{mark} && echo project-path-written; "
            f"{sys.executable} -c '{PROBE_SOCKET}' {port}; "
            f"(echo x > {outside}) 2>/dev/null || echo outside-refused; "
            "git add -A && git commit -qm evil 2>/dev/null || echo commit-refused; "
            "git log --oneline -1 && echo git-reads"
        )
        try:
            result, changed = validate(project, tmp_path / "state", "", script)
            with pytest.raises(TimeoutError):
                server.accept()
            # The probe is sound: outside the sandbox it does reach the server.
            bare = run_command([sys.executable, "-c", PROBE_SOCKET, str(port)], tmp_path, 30)
            assert bare.output == "connected\n"
        finally:
            leaked = [str(p) for p in (host_tmp, outside) if p.exists()]
            host_tmp.unlink(missing_ok=True)
            outside.unlink(missing_ok=True)
    out = result.output
    for said in ("home-written", "tmp-written", "project-path-written", "no-network", "outside-refused",
                 "commit-refused", "git-reads"):  # fmt: skip
        assert said in out, out
    assert "connected" not in out.replace("no-network", "")
    assert leaked == [] and not (home / f"x-{mark}").exists()
    assert not (project / f"escaped-{mark}").exists()  # it went to the throwaway worktree
    assert changed is None  # the commit was refused; the untracked file is ignored
    assert run_git(project, "rev-list", "--count", "HEAD").strip() == "1"


@needs_bwrap
def test_tests_that_edit_tracked_files_are_caught_in_the_sandbox(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "app")
    _, changed = validate(project, tmp_path / "state", "", "echo tampered >> README.md")
    assert changed == "the tests changed the repository (`README.md`)"


@needs_bwrap
def test_a_hung_test_and_its_setsid_child_are_killed_at_the_timeout(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "app")
    mark = f"{secrets.randbelow(10**6) + 10**6}.5"  # a sleep length no other process uses
    start = time.monotonic()
    result, _ = validate(project, tmp_path / "state", "", f"setsid sleep {mark} & sleep {mark}", timeout=1.5)
    assert result.timed_out and result.exit_status is None
    assert time.monotonic() - start < 20
    deadline = time.monotonic() + 10
    while _processes_with(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(mark) == []


PROBE_SOCKET = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)
    print("connected")
except ConnectionRefusedError:
    print("no-network")  # the sandbox has its own loopback, where nothing listens
"""


def _processes_with(arg: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in cmdline and entry.name.isdigit():
            found.append(int(entry.name))
    return found


@needs_bwrap
def test_writable_paths_are_written_and_checked(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "app")
    cache = tmp_path / "cache"
    cache.mkdir()
    with g.temporary_worktree(project, tmp_path / "state", "w") as wt:
        result = sandbox.run_tests(f"echo kept > {cache}/entry", wt, project, 30, writable=[str(cache)])
        assert result.ok, result.output
        assert (cache / "entry").read_text() == "kept\n"
        with pytest.raises(sandbox.ConfigError, match="holds the project itself"):
            sandbox.run_tests("true", wt, project, 30, writable=[str(tmp_path)])
        with pytest.raises(sandbox.ConfigError, match="does not exist"):
            sandbox.run_tests("true", wt, project, 30, writable=[str(tmp_path / "missing")])


@needs_bwrap
def test_a_sandbox_that_does_not_start_is_one_line_not_a_test_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_repo(tmp_path / "app")
    not_a_dir = tmp_path / "home-is-a-file"
    not_a_dir.write_text("")
    with g.temporary_worktree(project, tmp_path / "state", "s") as wt:
        monkeypatch.setenv("HOME", str(not_a_dir))  # bwrap cannot put the private HOME there
        with pytest.raises(sandbox.SandboxError) as caught:
            sandbox.run_tests("true", wt, project, 30)
    message = str(caught.value)
    assert message.startswith("the proof sandbox did not start: bubblewrap cannot start a sandbox (bwrap: ")
    assert "\n" not in message


def test_missing_bubblewrap_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_repo(tmp_path / "app")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert sandbox.problem() == "bubblewrap is not installed: apt install bubblewrap"
    with pytest.raises(sandbox.SandboxError, match="^bubblewrap is not installed: apt install bubblewrap$"):
        sandbox.run_tests("true", project, project, 30)
    # Explicitly unsandboxed (`sandbox = false`) still runs, bare.
    assert sandbox.run_tests([sys.executable, "-c", "pass"], project, project, 30, enabled=False).ok


@needs_bwrap
def test_home_is_private_but_git_configuration_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_repo(tmp_path / "app")
    home = Path.home()
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("secret key\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-tests")
    script = (
        "cat ~/.ssh/id_ed25519 2>/dev/null || echo key-hidden; git config init.defaultBranch; "
        'echo "key=${OPENAI_API_KEY:-unset}"; echo cached > ~/.cache-probe && cat ~/.cache-probe'
    )
    with g.temporary_worktree(project, tmp_path / "state", "h") as wt:
        result = sandbox.run_tests(script, wt, project, 30)
    assert result.output.split() == ["key-hidden", "main", "key=unset", "cached"]
    assert not (home / ".cache-probe").exists()


@needs_bwrap
def test_a_missing_home_gets_a_private_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_repo(tmp_path / "app")
    with g.temporary_worktree(project, tmp_path / "state", "h") as wt:
        monkeypatch.setenv("HOME", "/nonexistent")  # what system users often have
        result = sandbox.run_tests('echo x > "$HOME/probe" && echo "$HOME"', wt, project, 30)
    assert result.ok, result.output
    assert result.output.strip() == sandbox.SPARE_HOME


@needs_bwrap
def test_a_symlinked_venv_and_an_argument_list_command(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "app", {".gitignore": ".venv\n"})
    real_venv = tmp_path / "envs" / "app"
    (real_venv / "bin").mkdir(parents=True)
    (real_venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (real_venv / "bin" / "tool").write_text('#!/bin/sh\necho "tool says: $1"\n')
    (real_venv / "bin" / "tool").chmod(0o755)
    (project / ".venv").symlink_to(real_venv)
    with g.temporary_worktree(project, tmp_path / "state", "v") as wt:
        result = sandbox.run_tests([".venv/bin/tool", "it's $HOME; ok"], wt, project, 30)
    assert result.ok, result.output
    assert result.output == "tool says: it's $HOME; ok\n"


@needs_bwrap
def test_a_long_output_that_lost_the_start_marker_is_still_the_tests_verdict(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "app")
    with g.temporary_worktree(project, tmp_path / "state", "o") as wt:
        result = sandbox.run_tests("echo 'bwrap: a line the tests print'; yes noise | head -c 200000; exit 3", wt,
                                   project, 30)  # fmt: skip
    assert result.exit_status == 3 and "pimainteno-sandbox-started" not in result.output
    assert result.output.count("noise\n") > 10_000


@needs_bwrap
def test_network_true_lets_the_tests_reach_the_host(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "app")
    with socket.create_server(("127.0.0.1", 0)) as server, g.temporary_worktree(project, tmp_path / "s", "n") as wt:
        port = server.getsockname()[1]
        argv = [sys.executable, "-c", PROBE_SOCKET, str(port)]
        assert sandbox.run_tests(argv, wt, project, 30).output == "no-network\n"
        assert sandbox.run_tests(argv, wt, project, 30, network=True).output == "connected\n"


@needs_bwrap
def test_prove_judges_a_run_and_the_commit_is_what_was_proven(editable: Path, tmp_path: Path) -> None:
    command = "venv/bin/python -m unittest discover -s tests"
    state = tmp_path / "state"
    with g.temporary_worktree(editable, state, "p") as wt:
        g.git(wt, "apply", "--index", "-", input=BREAKING)
        broken = proof.prove(command, wt, editable, BREAKING, 60)
    assert broken.failure == "the tests failed (exit status 1)"
    with g.temporary_worktree(editable, state, "p") as wt:
        g.git(wt, "apply", "--index", "-", input=GOOD)
        good = proof.prove(command, wt, editable, GOOD, 60)
        sha = proof.commit_proposal(wt, good.expected, GOOD, "Explain encode\n", author="Bot <bot@example.com>")
    assert good.failure is None and good.result.ok
    assert run_git(editable, "show", f"{sha}:src/tinypkg/__init__.py").count("# upper-case") == 1
    with g.temporary_worktree(editable, state, "p") as wt:
        g.git(wt, "apply", "--index", "-", input=GOOD)
        empty = proof.prove("mkdir -p none && venv/bin/python -m unittest discover -s none", wt, editable, GOOD, 60)
        with pytest.raises(proof.RepositoryChanged, match=r"^the tests changed the repository \(`pyproject.toml`\)$"):
            proof.prove("echo '# more' >> pyproject.toml", wt, editable, GOOD, 60)
    assert empty.failure == "unittest ran no tests (`Ran 0 tests`)"
