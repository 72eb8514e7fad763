"""The proof holds on real projects (issue 12): `run` proves each patch in the bubblewrap sandbox at the
project's own path, nothing unproven lands by itself, failed fixes are remembered, approvals run the
whole chain. Real git, real bubblewrap, a real editable install; the `command` provider is the model."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pimainteno import errors, patch, pipeline, records
from pimainteno.app import App
from pimainteno.errors import PatchRejected
from pimainteno.pipeline import Request
from tests.conftest import make_repo, run_git
from tests.editable import INIT, editable_package
from tests.test_sandbox import PROBLEM

pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"the proof sandbox cannot run here: {PROBLEM}")
PY = sys.executable


def fixer(text: str, path: str = INIT) -> list[str]:
    """A `command` provider that writes `text` to `path` (the model of these tests)."""
    # The text goes as JSON: the configuration refuses control characters (newlines) in a command.
    return [PY, "-c", f"import json, pathlib, sys; p = pathlib.Path({path!r}); p.parent.mkdir(parents=True, "
            "exist_ok=True); p.write_text(json.loads(sys.argv[1]))", json.dumps(text)]  # fmt: skip


BREAK = fixer('def encode(text):\n    return "broken"\n')
GOOD = fixer("def encode(text):\n    # upper-case, as the tests expect\n    return text.upper()\n")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A src-layout package installed with `pip install -e .` in its own venv; (its path, first commit)."""
    project = editable_package(tmp_path_factory.mktemp("proof-pipeline"))
    return project, run_git(project, "rev-parse", "HEAD").strip()


@pytest.fixture
def pkg(package: tuple[Path, str], tmp_path: Path) -> Path:
    """The editable package back at its first commit, with a fresh bare remote `origin` of this test's own."""
    repo, base = package
    run_git(repo, "checkout", "-q", "main")
    run_git(repo, "reset", "-q", "--hard", base)
    run_git(repo, "clean", "-fdq")  # ignored files (the venv, the egg-info) stay
    run_git(repo, "worktree", "prune")
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(tmp_path / "remote.git")], check=True)
    run_git(repo, "remote", "remove", "origin") if "origin" in run_git(repo, "remote").split() else None
    run_git(repo, "remote", "add", "origin", str(tmp_path / "remote.git"))
    return repo


def configure(tmp_path: Path, repo: Path, command: list[str], *, test: list[str] | str | None = None,
              mode: str = "push", extra: str = "", name: str = "pkg") -> App:  # fmt: skip
    """The config a user writes: the project, its venv's test command, the fixer as the provider."""
    if test is None:
        test = [f"{repo}/venv/bin/python", "-m", "unittest", "discover", "-s", "tests"]
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\nprovider = "command"\ncommand = {json.dumps(command)}\n\n'
        f'[[project]]\nname = "{name}"\npath = "{repo}"\nbranch = "main"\nmode = "{mode}"\n'
        + (f"test = {json.dumps(test)}\n" if test else "")
        + f"test_timeout = 120\nrestart = false\nretries = 0\n{extra}"
    )
    return App(str(tmp_path / "PiMainteno.toml"))


def remote_head(tmp_path: Path) -> str:
    return run_git(tmp_path / "remote.git", "rev-parse", "main").strip()


def steps(app: App, run_id: int | None) -> list[tuple[str, str, str]]:
    return [(s["step"], s["outcome"], s.get("detail", "")) for s in json.loads(app.db["runs"].get(run_id)["steps"])]


def test_a_breaking_patch_to_an_editable_install_is_rejected_and_a_good_one_pushed(pkg: Path, tmp_path: Path) -> None:
    base = remote_head(tmp_path)
    app = configure(tmp_path, pkg, BREAK)
    broken = pipeline.run(app, Request("pkg"))
    # Before the sandbox the editable install imported the unpatched checkout and this passed.
    assert (broken.status, broken.exit_code) == ("rejected", errors.VALIDATION_FAILED), broken
    assert "the tests failed (exit status 1)" in (broken.error or "")
    proposal = app.db["proposals"].get(broken.proposal_id)
    assert proposal["status"] == "rejected" and "'broken' != 'AB'" in proposal["test_output"]
    assert run_git(pkg, "rev-parse", "HEAD").strip() == base == remote_head(tmp_path)
    assert run_git(pkg, "status", "--porcelain") == ""

    app = configure(tmp_path, pkg, GOOD)
    good = pipeline.run(app, Request("pkg", reason="try the good fixer"))
    assert (good.status, good.error) == ("ok", None)
    assert remote_head(tmp_path) == good.commit_sha == run_git(pkg, "rev-parse", "HEAD").strip()
    assert "+    # upper-case, as the tests expect" in run_git(pkg, "show", "HEAD")
    assert app.db["proposals"].get(good.proposal_id)["status"] == "pushed"
    assert app.db["projects"].get("pkg")["proof"] == "tests in the sandbox"


def test_an_absolute_path_in_the_test_command_sees_the_patch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "calc", {
        "src/calc.py": "def double(x):\n    return 2 * x\n",
        "tests/test_calc.py": "import unittest\n\nimport calc\n\n\nclass T(unittest.TestCase):\n"
                              "    def test_double(self):\n        self.assertEqual(calc.double(2), 4)\n",
    })  # fmt: skip
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(tmp_path / "remote.git")], check=True)
    run_git(repo, "remote", "add", "origin", str(tmp_path / "remote.git"))
    test = f"PYTHONPATH={repo}/src {PY} -m unittest discover -s tests"  # the checkout's own path, absolute
    app = configure(tmp_path, repo, fixer("def double(x):\n    return 3 * x\n", "src/calc.py"), test=test, name="calc")
    outcome = pipeline.run(app, Request("calc"))
    assert outcome.status == "rejected" and "the tests failed" in (outcome.error or ""), outcome
    assert (repo / "src/calc.py").read_text() == "def double(x):\n    return 2 * x\n"


def test_a_test_interpreter_in_a_virtualenv_under_home_is_shown_in_the_sandbox(tmp_path: Path) -> None:
    venv = Path.home() / ".virtualenvs-elsewhere" / "calc"  # HOME (and /tmp): both hidden in the sandbox
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    repo = make_repo(tmp_path / "calc", {
        "calc.py": "def double(x):\n    return 2 * x\n",
        "test_calc.py": "import unittest\n\nimport calc\n\n\nclass T(unittest.TestCase):\n"
                        "    def test_double(self):\n        self.assertEqual(calc.double(2), 4)\n",
    })  # fmt: skip
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(tmp_path / "remote.git")], check=True)
    run_git(repo, "remote", "add", "origin", str(tmp_path / "remote.git"))
    app = configure(tmp_path, repo, fixer("def double(x):\n    return x + x\n", "calc.py"), name="calc",
                    test=[str(venv / "bin/python"), "-m", "unittest", "-q"])  # fmt: skip
    outcome = pipeline.run(app, Request("calc"))
    assert outcome.status == "ok", outcome
    assert run_git(tmp_path / "remote.git", "show", "main:calc.py") == "def double(x):\n    return x + x\n"


HOSTILE_TEST = """\
import os, pathlib, socket, unittest


class Hostile(unittest.TestCase):
    def test_reaches_out(self):
        pathlib.Path(os.environ["HOME"], "planted-{mark}").write_text("x")
        pathlib.Path("/tmp/pimainteno-planted-{mark}").write_text("x")
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        except OSError:
            pass
"""


def test_a_patch_whose_tests_write_home_tmp_and_open_a_socket_leaves_the_host_untouched(
    pkg: Path, tmp_path: Path
) -> None:
    mark = secrets.token_hex(6)
    planted_tmp = Path(f"/tmp/pimainteno-planted-{mark}")
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        text = HOSTILE_TEST.format(mark=mark, port=server.getsockname()[1])
        app = configure(tmp_path, pkg, fixer(text, "tests/test_hostile.py"))
        try:
            outcome = pipeline.run(app, Request("pkg"))
            with pytest.raises(TimeoutError):
                server.accept()  # nothing connected: the sandbox has no network
        finally:
            leaked = planted_tmp.exists()
            planted_tmp.unlink(missing_ok=True)
    assert outcome.status == "ok", outcome  # its tests passed: inside, the writes worked
    assert not leaked
    assert not (Path.home() / f"planted-{mark}").exists()
    assert not list(Path.home().glob("planted-*"))


CHANGES_THE_REPO = {
    "edit": "pathlib.Path('.gitignore').write_text('changed by a test\\n')",
    "stage": "pathlib.Path('evil.yml').write_text('x'); subprocess.run(['git', 'add', 'evil.yml'])",
    "commit": "pathlib.Path('evil.yml').write_text('x'); subprocess.run(['git', 'add', 'evil.yml']); "
    "subprocess.run(['git', 'commit', '-qm', 'evil'])",
}


@pytest.mark.parametrize(
    ("what", "sandboxed", "said"),
    [
        ("edit", True, "the tests changed the repository (`.gitignore`)"),
        ("stage", False, "the tests changed the repository (staged `evil.yml`)"),
        ("commit", False, "the tests changed the repository (a new commit: "),
        ("commit", True, None),  # in the sandbox git cannot write: the attempt fails, nothing of it lands
    ],
)
def test_a_patch_whose_tests_change_the_repository_lands_nothing_of_it(
    pkg: Path, tmp_path: Path, what: str, sandboxed: bool, said: str | None
) -> None:
    text = (
        "import pathlib, subprocess, unittest\n\n\nclass Sneaky(unittest.TestCase):\n"
        f"    def test_sneak(self):\n        {CHANGES_THE_REPO[what]}\n"
    )
    app = configure(tmp_path, pkg, fixer(text, "tests/test_sneaky.py"), extra="" if sandboxed else "sandbox = false\n")
    base = remote_head(tmp_path)
    outcome = pipeline.run(app, Request("pkg"))
    if said:
        assert outcome.status == "rejected" and said in (outcome.error or ""), outcome
        assert app.db["proposals"].get(outcome.proposal_id)["status"] == "rejected"
        assert run_git(pkg, "rev-parse", "HEAD").strip() == base == remote_head(tmp_path)
    else:
        assert outcome.status == "ok", outcome
        landed = run_git(pkg, "show", "--name-only", "--format=", "HEAD").split()
        assert landed == ["tests/test_sneaky.py"]  # the proposal's own diff, nothing the tests made
    assert "evil" not in run_git(tmp_path / "remote.git", "log", "--format=%s", "main")
    assert "evil.yml" not in run_git(tmp_path / "remote.git", "ls-tree", "-r", "--name-only", "main")
    assert run_git(pkg, "status", "--porcelain") == ""


def test_a_test_command_that_ran_no_tests_proves_nothing(pkg: Path, tmp_path: Path) -> None:
    app = configure(tmp_path, pkg, GOOD, test=[f"{pkg}/venv/bin/python", "-m", "unittest", "discover", "-s", "src"])
    outcome = pipeline.run(app, Request("pkg"))
    assert outcome.status == "rejected" and "ran no tests" in (outcome.error or ""), outcome
    assert remote_head(tmp_path) == run_git(pkg, "rev-parse", "HEAD").strip()


def test_without_a_test_command_the_proposal_waits_for_a_person(pkg: Path, tmp_path: Path) -> None:
    app = configure(tmp_path, pkg, GOOD, test="")
    base = remote_head(tmp_path)
    outcome = pipeline.run(app, Request("pkg", source="timer"))
    assert (outcome.status, outcome.commit_sha) == ("ok", None)
    assert remote_head(tmp_path) == base == run_git(pkg, "rev-parse", "HEAD").strip()
    assert app.db["proposals"].get(outcome.proposal_id)["status"] == "proposed"
    assert steps(app, outcome.run_id)[-1] == (
        "validate", "skipped",
        f'no test command: proposal #{outcome.proposal_id} waits for a person to approve it (set `test`, or '
        'unproven = "push" to land unproven changes)',
    )  # fmt: skip
    assert app.db["projects"].get("pkg")["proof"] == "none: no test command, proposals wait for a person"
    from pimainteno.dashboard.overview import merge_projects

    (shown,) = merge_projects(app.config, [])  # the overview: Approve/Reject buttons although mode = "push"
    assert (shown["mode"], shown["waits"], shown["proof"]) == ("push", True, app.db["projects"].get("pkg")["proof"])
    # The person's approval lands it (checked by the policy, unproven: there is no test to prove it).
    approved = pipeline.dispatch(app, Request("pkg", kind="apply", source="dashboard", proposal_id=outcome.proposal_id))
    assert approved.status == "ok" and remote_head(tmp_path) == approved.commit_sha  # type: ignore[union-attr]
    # unproven = "push" is the seed's old behaviour: it lands unproven by itself.
    app = configure(tmp_path, pkg, fixer("def encode(text):\n    return text.upper()  # loud\n"), test="",
                    extra='unproven = "push"\n')  # fmt: skip
    pushed = pipeline.run(app, Request("pkg", reason="again"))
    assert pushed.status == "ok" and remote_head(tmp_path) == pushed.commit_sha
    assert app.db["proposals"].get(pushed.proposal_id)["status"] == "pushed"


def test_a_rejected_change_is_not_retried_by_a_timer_run(pkg: Path, tmp_path: Path) -> None:
    app = configure(tmp_path, pkg, BREAK, extra='propose_when = "always"\n')
    first = pipeline.run(app, Request("pkg", source="timer"))
    assert first.status == "rejected"
    again = pipeline.run(app, Request("pkg", source="timer"))
    assert (again.status, again.exit_code) == ("nothing", errors.OK)
    assert again.error == (
        f"the same change was rejected in proposal #{first.proposal_id} (the tests failed (exit status 1)); "
        "not trying it again (ask with `pimainteno run --retry-known`)"
    )
    assert [s[0] for s in steps(app, again.run_id)] == ["summarize", "propose", "memory"]  # not tested again
    assert app.db["proposals"].get(again.proposal_id)["status"] == "discarded"
    assert app.db["runs"].get(again.run_id)["error"] == again.error  # what the dashboard shows
    asked = pipeline.run(app, Request("pkg", reason="I fixed the tests", retry_known=True))
    assert asked.status == "rejected" and "the tests failed" in (asked.error or "")


def test_a_rolled_back_change_is_not_retried_by_a_timer_run(pkg: Path, tmp_path: Path) -> None:
    app = configure(tmp_path, pkg, GOOD, extra='propose_when = "always"\n')
    landed = pipeline.run(app, Request("pkg", source="timer"))
    assert landed.status == "ok" and landed.commit_sha and landed.run_id
    # The rollback itself (restart_after_push's second half, without a unit to restart): revert and push.
    pipeline.revert(app, app.project("pkg"), landed.commit_sha, landed.run_id, "pkg.service was unhealthy")
    pipeline.push(app, app.project("pkg"), run_id=landed.run_id)
    assert app.db["proposals"].get(landed.proposal_id)["status"] == "rolled_back"
    head = run_git(pkg, "rev-parse", "HEAD").strip()
    again = pipeline.run(app, Request("pkg", source="timer"))  # HEAD moved: the model is asked again
    assert again.status == "nothing"
    assert again.error and again.error.startswith(f"the same change was rolled back in run #{landed.run_id}; ")
    assert run_git(pkg, "rev-parse", "HEAD").strip() == head == remote_head(tmp_path)


def test_approving_runs_the_whole_chain_whatever_the_mode_and_reject_then_is_refused(pkg: Path, tmp_path: Path) -> None:
    app = configure(tmp_path, pkg, GOOD, mode="commit")
    waiting = pipeline.run(app, Request("pkg", source="timer", mode="propose"))
    pid = waiting.proposal_id
    assert pid and app.db["proposals"].get(pid)["status"] == "proposed"
    approved = pipeline.dispatch(app, Request("pkg", kind="apply", source="dashboard", proposal_id=pid))
    assert approved.status == "ok" and remote_head(tmp_path) == approved.commit_sha  # type: ignore[union-attr]
    assert [s[0] for s in steps(app, approved.run_id)] == ["validate", "commit", "merge", "push", "restart"]
    assert app.db["proposals"].get(pid)["decided_by"] == "dashboard"
    refused = pipeline.dispatch(app, Request("pkg", kind="reject", source="dashboard", proposal_id=pid))
    assert refused == pipeline.Outcome(
        "failed", error=f"proposal #{pid} is pushed, approved by dashboard (origin refs/heads/main); not rejecting it"
    )


def test_a_rejected_proposal_cannot_be_approved(pkg: Path, tmp_path: Path) -> None:
    app = configure(tmp_path, pkg, GOOD, mode="propose")
    pid = pipeline.run(app, Request("pkg")).proposal_id
    assert pid
    rejected = pipeline.dispatch(app, Request("pkg", kind="reject", source="dashboard", proposal_id=pid))
    assert rejected == pipeline.Outcome("rejected")
    approve = pipeline.dispatch(app, Request("pkg", kind="apply", source="cli", proposal_id=pid))
    assert approve.status == "failed"  # nothing ran
    assert approve.error == f"proposal #{pid} was rejected by dashboard (rejected on the dashboard); not applying it"
    with pytest.raises(records.IllegalTransition, match="only a waiting or proven proposal can be applied"):
        pipeline.apply_patch(app, None, proposal_id=pid)


def test_a_proposal_that_no_longer_applies_becomes_stale(pkg: Path, tmp_path: Path) -> None:
    app = configure(tmp_path, pkg, GOOD, mode="propose")
    first = pipeline.run(app, Request("pkg")).proposal_id
    second = pipeline.run(app, Request("pkg", reason="once more")).proposal_id
    assert first and second
    (pkg / INIT).write_text("def encode(text):\n    return text.upper()  # moved on\n")
    run_git(pkg, "commit", "-qam", "someone moved on")
    approved = pipeline.dispatch(app, Request("pkg", kind="apply", source="dashboard", proposal_id=first))
    assert approved.status == "rejected" and "does not apply" in (approved.error or "")  # type: ignore[union-attr]
    assert f"proposal #{first} is marked stale and can be proposed again" in (approved.error or "")  # type: ignore[union-attr]
    row = app.db["proposals"].get(first)
    assert row["status"] == "stale" and "does not apply" in row["status_reason"]
    with pytest.raises(PatchRejected, match="does not apply"):
        pipeline.apply_patch(app, None, proposal_id=second)  # `pimainteno apply --proposal N`: the same
    assert app.db["proposals"].get(second)["status"] == "stale"
    assert run_git(pkg, "status", "--porcelain") == ""


def test_a_patch_header_earns_credit_only_for_its_own_projects_exact_proposal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = make_repo(tmp_path / "a", {"notes.txt": "one\n"})
    b = make_repo(tmp_path / "b", {"notes.txt": "one\n"})
    add_two = fixer("one\ntwo\n", "notes.txt")
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\nprovider = "command"\ncommand = {json.dumps(add_two)}\n\n'
        f'[[project]]\nname = "a"\npath = "{a}"\nmode = "propose"\nrestart = false\n\n'
        f'[[project]]\nname = "b"\npath = "{b}"\nmode = "propose"\nrestart = false\n'
    )
    app = App(str(tmp_path / "PiMainteno.toml"))
    pid = pipeline.run(app, Request("b")).proposal_id
    assert pid
    diff = records.get_proposal(app.db, pid).diff
    # Another project's proposal: the diff applies to `a`, but b's proposal gets no credit.
    caplog.clear()
    applied = pipeline.apply_patch(app, patch.format_patch(diff, "a", pid))
    assert (applied.project, applied.proposal_id) == ("a", None)
    assert (
        f"a: applying it as a plain diff, not as proposal #{pid}: that proposal belongs to project 'b'" in caplog.text
    )
    assert app.db["proposals"].get(pid)["status"] == "proposed"
    # An edited diff naming the right project and proposal: no credit either.
    edited = diff.replace("+two", "+three")
    caplog.clear()
    applied = pipeline.apply_patch(app, patch.format_patch(edited, "b", pid))
    assert applied.proposal_id is None and "the patch is not that proposal's diff (it was edited)" in caplog.text
    run_git(b, "reset", "-q", "--hard")
    # The proposal's own diff for its own project: credited.
    applied = pipeline.apply_patch(app, patch.format_patch(diff, "b", pid))
    assert applied.proposal_id == pid and app.db["proposals"].get(pid)["status"] == "applied"


def test_without_bubblewrap_validation_refuses_naming_the_fix(
    pkg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with git but no bwrap
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True,
                                                check=True).stdout.strip())  # fmt: skip
    app = configure(tmp_path, pkg, GOOD)
    monkeypatch.setenv("PATH", str(bin_dir))
    outcome = pipeline.run(app, Request("pkg"))
    assert (outcome.status, outcome.exit_code) == ("failed", errors.TOOL_FAILED)
    assert outcome.error == (
        "pkg: the tests cannot run in the proof sandbox: bubblewrap is not installed: apt install bubblewrap "
        "(or set sandbox = false: unsafe)"
    )
    assert remote_head(tmp_path) == run_git(pkg, "rev-parse", "HEAD").strip()
    # `sandbox = false` is the explicit, unsafe way out: it works, warned about on every run and shown.
    app = configure(tmp_path, pkg, GOOD, extra="sandbox = false\n")
    caplog.clear()
    unsafe = pipeline.run(app, Request("pkg", reason="unsandboxed"))
    assert unsafe.status == "ok", unsafe
    assert "sandbox = false: the tests run with your full rights, unsandboxed (UNSAFE" in caplog.text
    assert app.db["projects"].get("pkg")["proof"] == "UNSAFE: tests run unsandboxed (sandbox = false)"


def test_doctor_run_tests_runs_the_suite_once_in_the_sandbox(pkg: Path, tmp_path: Path) -> None:
    from pimainteno.doctor_project import test_runs

    app = configure(tmp_path, pkg, GOOD)
    (check,) = test_runs(app.config, [app.project("pkg")])
    assert check.status == "ok" and "passes on HEAD in the proof sandbox" in check.detail, check
    app = configure(tmp_path, pkg, GOOD, test=[f"{pkg}/venv/bin/python", "-m", "unittest", "discover", "-s", "src"])
    (check,) = test_runs(app.config, [app.project("pkg")])
    assert check.status == "fail" and "unittest ran no tests" in check.detail, check


def test_approve_and_reject_cannot_both_be_queued(pkg: Path, tmp_path: Path) -> None:
    from pimainteno import queue
    from pimainteno.commands.drain import drain
    from pimainteno.errors import InputError

    app = configure(tmp_path, pkg, GOOD, mode="propose")
    pid = pipeline.run(app, Request("pkg")).proposal_id
    assert pid
    queue.enqueue(app.config.queue_dir, "pkg", kind="apply", source="dashboard", proposal_id=pid)
    with pytest.raises(
        InputError, match=f"proposal #{pid} already has an approval queued; approve and reject are exclusive"
    ):
        queue.enqueue(app.config.queue_dir, "pkg", kind="reject", source="dashboard", proposal_id=pid)
    (row,) = drain(app)
    assert row["status"] == "done" and app.db["proposals"].get(pid)["status"] == "pushed"
    assert remote_head(tmp_path) == run_git(pkg, "rev-parse", "HEAD").strip()
