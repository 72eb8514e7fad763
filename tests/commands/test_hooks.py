"""The git post-merge hook on real clones: `git pull` queues one run, foreign hooks are kept and
restored, core.hooksPath is honoured, and a broken setup never fails the pull."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pimainteno import config, errors, queue
from pimainteno.commands.hooks import MARKER, install_hook, read_projects, uninstall_hook
from tests.conftest import REPO_ROOT, CliResult, make_repo, run_cli, run_git, write_config

FOREIGN = b'#!/bin/sh\n# someone else\'s hook\nls "$PIMAINTENO_QUEUE" 2>/dev/null | grep -c json >> ran-foreign.log\n'


def clone(tmp_path: Path, name: str = "app") -> tuple[Path, Path]:
    """An upstream repository and a clone of it (the configured project)."""
    upstream = tmp_path / f"{name}-upstream"
    if not upstream.exists():
        make_repo(upstream)
    run_git(tmp_path, "clone", "-q", str(upstream), str(tmp_path / name))
    return upstream, tmp_path / name


def new_upstream_commit(upstream: Path) -> None:
    with (upstream / "README.md").open("a") as f:
        f.write("more\n")
    run_git(upstream, "commit", "-q", "-am", "upstream change")


def pull(repo: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), "pull", "-q", "--no-rebase"],
        capture_output=True,
        text=True,
        env={**os.environ, "PIMAINTENO_QUEUE": str(queue_dir_of()), **(env or {})},
        timeout=60,
    )


def queue_dir_of() -> Path:
    return Path(os.environ["PIMAINTENO_STATE_DIR"]) / "queue"


def queued() -> list[dict]:
    q = queue_dir_of()
    return [json.loads(p.read_text()) for p in sorted(q.glob("*.json"))] if q.exists() else []


def configure(tmp_path: Path, *projects: tuple[str, Path]) -> Path:
    return write_config(tmp_path, "".join(f"[[project]]\nname = '{n}'\npath = '{p}'\n" for n, p in projects))


@pytest.fixture
def app_clone(tmp_path: Path) -> tuple[Path, Path]:
    upstream, repo = clone(tmp_path)
    configure(tmp_path, ("app", repo))
    return upstream, repo


def install(*args: str) -> CliResult:
    result = run_cli("install-hook", *args)
    assert result.returncode == 0, result.stderr
    return result


def test_a_pull_queues_exactly_one_run_and_a_second_pull_merges_into_it(app_clone: tuple[Path, Path]) -> None:
    upstream, repo = app_clone
    result = install("app")
    hook = repo / ".git" / "hooks" / "post-merge"
    assert result.stderr == f"app: post-merge hook installed at {hook}\n"
    text = hook.read_text()
    assert text.startswith("#!/bin/sh\n" + MARKER) and f"PY={sys.executable}\n" in text
    assert os.access(hook, os.X_OK)

    new_upstream_commit(upstream)
    first = pull(repo)
    assert first.returncode == 0 and first.stderr == "pimainteno: queued a run for app\n"
    [trigger] = queued()
    assert (trigger["project"], trigger["kind"], trigger["source"], trigger["requests"]) == ("app", "run", "hook", 1)

    assert queue.parse_trigger(json.dumps(trigger).encode()).source == "hook"  # the shell wrote a valid trigger

    new_upstream_commit(upstream)
    second = pull(repo)
    assert second.returncode == 0 and second.stderr == "pimainteno: a run is already queued for app\n"
    [again] = queued()
    assert again == trigger  # the waiting run covers this pull too

    assert pull(repo).stderr == ""  # already up to date: git runs no post-merge hook


def test_a_foreign_hook_keeps_running_first_and_is_restored_byte_for_byte(app_clone: tuple[Path, Path]) -> None:
    upstream, repo = app_clone
    hooks = repo / ".git" / "hooks"
    (hooks / "post-merge").write_bytes(FOREIGN)
    os.chmod(hooks / "post-merge", 0o750)
    before = (hooks / "post-merge").stat()

    result = install("app")
    assert result.stderr.endswith("; the hook that was there runs first (post-merge.legacy)\n")
    assert (hooks / "post-merge.legacy").read_bytes() == FOREIGN
    installed = (hooks / "post-merge").read_bytes()
    again = install("app")  # idempotent: nothing moves, nothing is chained twice
    assert again.stderr.startswith("app: post-merge hook already installed at")
    assert (hooks / "post-merge").read_bytes() == installed
    assert sorted(p.name for p in hooks.glob("post-merge*")) == ["post-merge", "post-merge.legacy"]

    new_upstream_commit(upstream)
    assert pull(repo).returncode == 0
    assert (repo / "ran-foreign.log").read_text() == "0\n"  # it ran, and before the run was queued
    assert len(queued()) == 1

    result = run_cli("uninstall-hook", "app")
    assert result.returncode == 0
    assert (
        result.stderr
        == f"app: removed the post-merge hook at {hooks / 'post-merge'} and restored the hook that was there before\n"
    )
    after = (hooks / "post-merge").stat()
    assert (hooks / "post-merge").read_bytes() == FOREIGN
    assert (stat.S_IMODE(after.st_mode), after.st_ino) == (0o750, before.st_ino)
    assert not (hooks / "post-merge.legacy").exists()
    assert run_cli("uninstall-hook", "app").stderr.endswith("; nothing to do\n")


def test_uninstall_without_a_foreign_hook_removes_ours(app_clone: tuple[Path, Path]) -> None:
    _, repo = app_clone
    hooks = repo / ".git" / "hooks"
    before = sorted(p.name for p in hooks.iterdir())
    install("app")
    assert run_cli("uninstall-hook", "app").returncode == 0
    assert sorted(p.name for p in hooks.iterdir()) == before


def test_a_foreign_hook_and_a_legacy_one_are_both_left_alone(app_clone: tuple[Path, Path]) -> None:
    _, repo = app_clone
    hooks = repo / ".git" / "hooks"
    (hooks / "post-merge").write_bytes(FOREIGN)
    (hooks / "post-merge.legacy").write_bytes(b"#!/bin/sh\n")
    result = run_cli("install-hook", "app")
    assert result.returncode == errors.BAD_INPUT
    assert result.stderr == (
        f"Error: {hooks / 'post-merge'} is not pimainteno's and post-merge.legacy exists too; not replacing either: "
        "merge them into one hook, then install again\n"
    )
    assert (hooks / "post-merge").read_bytes() == FOREIGN


def test_worktrees_share_the_hook_in_the_common_git_dir(tmp_path: Path) -> None:
    """Two projects on two worktrees of one repository: one hook file serves both."""
    upstream, repo = clone(tmp_path)
    run_git(repo, "branch", "staging")
    worktree = tmp_path / "app-staging"
    run_git(repo, "worktree", "add", "-q", str(worktree), "staging")
    configure(tmp_path, ("app", repo), ("staging", worktree))
    install("app")
    install("staging")
    hook = repo / ".git" / "hooks" / "post-merge"
    assert [e["project"] for e in read_projects(hook) or []] == ["app", "staging"]
    assert not (repo / ".git" / "worktrees" / "app-staging" / "hooks").exists()

    run_git(worktree, "merge", "-q", "--ff-only", "main")  # nothing to merge: no hook
    new_upstream_commit(upstream)
    run_git(repo, "pull", "-q", "--no-rebase")
    run_git(worktree, "merge", "-q", "--ff-only", "main")
    assert sorted(t["project"] for t in queued()) == ["app", "staging"]

    result = run_cli("uninstall-hook", "app")
    assert result.stderr.endswith("(it still serves staging)\n")
    assert [e["project"] for e in read_projects(hook) or []] == ["staging"]


def test_a_shared_core_hooks_path_gets_the_hook_and_only_the_configured_repository_queues(tmp_path: Path) -> None:
    shared = tmp_path / "home" / "githooks"
    shared.mkdir()
    (shared / "post-merge").write_bytes(FOREIGN)
    os.chmod(shared / "post-merge", 0o755)
    run_git(tmp_path, "config", "--global", "core.hooksPath", str(shared))
    upstream, repo = clone(tmp_path)
    other_upstream, other = clone(tmp_path, "other")  # uses the same hooks, not configured
    configure(tmp_path, ("app", repo))

    result = install("app")
    assert result.stderr == (
        f"app: post-merge hook installed at {shared / 'post-merge'} (core.hooksPath); "
        "the hook that was there runs first (post-merge.legacy)\n"
    )
    assert not (repo / ".git" / "hooks" / "post-merge").exists()

    new_upstream_commit(other_upstream)
    assert pull(other).returncode == 0
    assert queued() == []  # another repository sharing the hooks queues nothing
    assert (other / "ran-foreign.log").read_text() == "0\n"

    new_upstream_commit(upstream)
    assert pull(repo).stderr == "pimainteno: queued a run for app\n"
    assert [t["project"] for t in queued()] == ["app"]
    assert (repo / "ran-foreign.log").read_text() == "0\n"

    assert run_cli("uninstall-hook", "app").returncode == 0
    assert (shared / "post-merge").read_bytes() == FOREIGN and not (shared / "post-merge.legacy").exists()


def test_a_committed_core_hooks_path_is_not_rewritten(app_clone: tuple[Path, Path]) -> None:
    _, repo = app_clone
    (repo / ".githooks").mkdir()
    (repo / ".githooks" / "post-merge").write_bytes(FOREIGN)
    run_git(repo, "add", ".githooks")
    run_git(repo, "commit", "-q", "-m", "hooks")
    run_git(repo, "config", "core.hooksPath", ".githooks")
    result = run_cli("install-hook", "app")
    assert result.returncode == errors.BAD_INPUT
    assert result.stderr.startswith(
        f"Error: {repo / '.githooks' / 'post-merge'} is committed in {repo} (core.hooksPath)"
    )
    assert run_git(repo, "status", "--porcelain") == ""


def test_the_hook_without_pimainteno_warns_and_the_pull_succeeds(app_clone: tuple[Path, Path], tmp_path: Path) -> None:
    upstream, repo = app_clone
    cfg = config.load(None)
    gone = tmp_path / "removed-venv" / "bin" / "python"
    install_hook(cfg.project("app"), cfg.path or Path(), python=str(gone))
    bare_path = "/usr/bin:/bin"
    assert shutil.which("pimainteno", path=bare_path) is None and shutil.which("git", path=bare_path)
    new_upstream_commit(upstream)
    result = pull(repo, env={"PATH": bare_path})
    assert result.returncode == 0
    assert result.stderr == (
        f"pimainteno: warning: no run queued for app: {gone} is gone and pimainteno is not on PATH "
        "(reinstall: pimainteno install-hook app)\n"
    )
    assert run_git(repo, "log", "-1", "--format=%s") == "upstream change\n"  # the pull itself happened
    assert queued() == []


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_the_hook_with_a_missing_config_warns_and_the_pull_succeeds(app_clone: tuple[Path, Path], damage: str) -> None:
    upstream, repo = app_clone
    install("app")
    cfg_file = Path(os.environ["PIMAINTENO_CONFIG"])
    cfg_file.unlink()
    if damage == "unreadable":  # a directory where the file was: unreadable even for root
        cfg_file.mkdir()
    new_upstream_commit(upstream)
    result = pull(repo)
    assert result.returncode == 0
    assert result.stderr == (
        f"pimainteno: warning: no run queued for app: cannot read {cfg_file} (reinstall: pimainteno install-hook app)\n"
    )
    assert queued() == []


def test_a_config_broken_after_install_is_reported_by_the_drain_not_the_pull(app_clone: tuple[Path, Path]) -> None:
    """The hook parses nothing (no interpreter on the pull path); the drain says what is wrong."""
    upstream, repo = app_clone
    install("app")
    cfg_file = Path(os.environ["PIMAINTENO_CONFIG"])
    good = cfg_file.read_text()
    cfg_file.write_text("[[project]\n")
    new_upstream_commit(upstream)
    result = pull(repo)
    assert (result.returncode, result.stderr) == (0, "pimainteno: queued a run for app\n")
    drained = run_cli("drain")
    assert drained.returncode == errors.BAD_INPUT and "invalid TOML" in drained.stderr
    cfg_file.write_text(good)
    assert len(queued()) == 1  # still waiting for a drain that can read the configuration


def test_pimaintenos_own_merges_queue_nothing(app_clone: tuple[Path, Path]) -> None:
    upstream, repo = app_clone
    (repo / ".git" / "hooks" / "post-merge").write_bytes(FOREIGN)
    os.chmod(repo / ".git" / "hooks" / "post-merge", 0o755)
    install("app")
    new_upstream_commit(upstream)
    result = pull(repo, env={"PIMAINTENO_ACTIVE": "1"})  # what a drain sets for the runs it starts
    assert (result.returncode, result.stderr) == (0, "")
    assert queued() == [] and (repo / "ran-foreign.log").read_text() == "0\n"


def test_reinstalling_after_the_interpreter_moved_updates_the_hook(app_clone: tuple[Path, Path]) -> None:
    _, repo = app_clone
    cfg = config.load(None)
    change = install_hook(cfg.project("app"), cfg.path or Path(), python="/old/python")
    assert change.changed
    result = install("app")
    assert result.stderr.startswith("app: post-merge hook installed at")
    assert f"PY={sys.executable}\n" in (repo / ".git" / "hooks" / "post-merge").read_text()
    assert not (repo / ".git" / "hooks" / "post-merge.legacy").exists()  # our own hook is never "foreign"
    assert uninstall_hook(cfg.project("app"), cfg.path or Path()).changed


def test_install_hook_needs_a_configured_git_repository(tmp_path: Path) -> None:
    configure(tmp_path, ("app", tmp_path / "nowhere"))
    result = run_cli("install-hook", "app")
    assert result.returncode == errors.BAD_INPUT
    assert result.stderr.startswith(f"Error: project 'app': path {tmp_path / 'nowhere'} does not exist")
    assert run_cli("install-hook", "nope").stderr.startswith("Error: unknown project 'nope'")


def test_the_done_criterion_pull_drain_status(tmp_path: Path) -> None:
    """install-hook, `git pull` queues a run, `drain` runs the real chain, `status` shows trigger hook."""
    upstream, repo = clone(tmp_path)
    write_config(
        tmp_path,
        f'[llm]\nprovider = "command"\ncommand = "true"\n\n[[project]]\nname = "app"\npath = "{repo}"\ntest = "true"\n',
    )
    install("app")
    new_upstream_commit(upstream)
    assert pull(repo).returncode == 0
    assert len(queued()) == 1
    head = run_git(repo, "rev-parse", "HEAD")

    drained = run_cli("drain", "--json")
    assert drained.returncode == 0, drained.stderr
    [record] = [json.loads(line) for line in drained.stdout.splitlines()]
    assert (record["project"], record["source"], record["status"], record["detail"]) == (
        "app",
        "hook",
        "done",
        "nothing",
    )
    assert queued() == []
    assert run_git(repo, "rev-parse", "HEAD") == head  # the fixer changed nothing, so nothing landed

    status = json.loads(run_cli("status", "--json").stdout)
    [run] = status["runs"]
    assert (run["id"], run["project"], run["trigger"], run["status"]) == (record["run_id"], "app", "hook", "nothing")
    assert status["queue"]["pending"] == []


def test_the_pre_commit_framework_entry_enqueues_at_post_merge(app_clone: tuple[Path, Path]) -> None:
    """Run the entry as pre-commit would at post-merge: `entry` + `args`, no file names, in the repository."""
    import yaml

    _, repo = app_clone
    [hook] = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    assert (hook["stages"], hook["always_run"], hook["pass_filenames"]) == (["post-merge"], True, False)
    venv_bin = str(Path(sys.executable).parent)
    result = subprocess.run(
        [*shlex.split(hook["entry"]), "app"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": venv_bin + os.pathsep + os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stderr
    assert [(t["project"], t["source"]) for t in queued()] == [("app", "hook")]


def test_the_hooks_trigger_round_trips_through_queue_py_byte_for_byte(app_clone: tuple[Path, Path]) -> None:
    """One writer of the format: what the sh hook writes is exactly Trigger.to_json() of what queue.py reads."""
    upstream, repo = app_clone
    install("app")
    new_upstream_commit(upstream)
    assert pull(repo).stderr == "pimainteno: queued a run for app\n"
    [path] = queue_dir_of().glob("*.json")
    written = path.read_bytes()
    t = queue.parse_trigger(written)
    assert (t.project, t.kind, t.source, t.reason, t.requests, t.attempts) == (
        "app", "run", "hook", "git pull (post-merge)", 1, 0
    )  # fmt: skip
    assert written == queue.Trigger("app", "run", "hook", t.reason, requested_at=t.requested_at, id=t.id).to_json()
    assert path.name == f"{t.key}.json"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", t.requested_at)  # as queue.now() writes it
    claim = queue.Claim(queue_dir_of())
    try:
        [(claimed, item)] = list(queue.claimed(claim))
        assert item == t and claimed.read_bytes() == written
    finally:
        os.unlink(claimed)
        claim.close()


HOSTILE = "we %s %% 'single' \"double\" $(touch PWNED) `touch PWNED` \\back ; & | *"


def test_hostile_values_render_a_hook_that_sh_accepts_and_that_queues_a_valid_trigger(tmp_path: Path) -> None:
    nest = tmp_path / HOSTILE
    nest.mkdir()
    upstream, repo = clone(nest)
    cfg_path = nest / "PiMainteno.toml"
    cfg_path.write_text(f"[[project]]\nname = 'app'\npath = {json.dumps(str(repo))}\n")
    python = nest / "python"
    python.symlink_to(sys.executable)
    q = nest / "queue"
    change = install_hook(config.load(cfg_path).project("app"), cfg_path, python=str(python), queue_dir=q)
    for shell in ("sh", "dash", "bash"):
        if shutil.which(shell):
            checked = subprocess.run([shell, "-n", str(change.hook)], capture_output=True, text=True, timeout=10)
            assert (checked.returncode, checked.stderr) == (0, ""), shell
    assert read_projects(change.hook) == [
        {"path": str(repo.resolve()), "project": "app", "config": str(cfg_path.resolve()), "queue": str(q.resolve())}
    ]
    new_upstream_commit(upstream)
    result = pull(repo)
    assert (result.returncode, result.stderr) == (0, "pimainteno: queued a run for app\n")
    [path] = q.glob("*.json")
    assert queue.parse_trigger(path.read_bytes()).source == "hook"
    assert not list(tmp_path.rglob("PWNED"))  # nothing in a value ran


@pytest.mark.parametrize(
    ("where", "key"),
    [("path", "the project path"), ("config", "the configuration path"), ("queue", "[queue] dir"),
     ("python", "the interpreter path")],
)  # fmt: skip
@pytest.mark.parametrize("control", ["\n", "\r", "\x1b", "\x00"])
def test_control_characters_in_a_rendered_value_are_refused_naming_the_key(where: str, key: str, control: str) -> None:
    from pimainteno.commands.hooks import render

    entry = {"path": "/srv/app", "project": "app", "config": "/etc/p.toml", "queue": "/var/q"}
    python = "/usr/bin/python3"
    if where == "python":
        python += control + "x"
    else:
        entry[where] += control + "x"
    with pytest.raises(errors.InputError) as e:
        render([entry], python)
    assert str(e.value).startswith(f"cannot install the hook: {key} ") and repr(control) in str(e.value)


@pytest.mark.parametrize("name", ["app\n", "a b", "app'", "$(x)", ""])
def test_a_project_name_a_trigger_cannot_carry_is_refused(name: str) -> None:
    from pimainteno.commands.hooks import render

    with pytest.raises(errors.InputError, match="is not a project name a trigger can carry"):
        render([{"path": "/srv/app", "project": name, "config": "/c", "queue": "/q"}], "/usr/bin/python3")
