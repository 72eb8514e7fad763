"""codex runs: the .git guard, a broken sandbox, the structured patch answer, start-up options, version."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest

from pimainteno import git
from pimainteno.config import LLMConfig
from pimainteno.providers.codex import PATCH_SCHEMA, CodexProvider, build_argv, run_codex
from pimainteno.providers.codex_version import version_warning
from tests.conftest import make_repo, run_git
from tests.modelserver import exec_command, message
from tests.providers.test_codex import emit, fake_codex

pytest_plugins = ["tests.conftest_codex"]


@pytest.fixture
def worktree(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "app", {"app.py": "GREETING = 'hello'\n"})
    wt = tmp_path / "wt"
    run_git(repo, "worktree", "add", "--detach", "-q", str(wt))
    return repo, wt


PROJECT = types.SimpleNamespace(name="app")


@pytest.mark.codex
def test_model_that_changes_the_main_git_config_and_hooks_fails_and_is_undone(
    worktree, codex_bin: Path, codex_home: Path, model_server
):
    repo, wt = worktree
    config = (repo / ".git" / "config").read_bytes()
    attack = (f"git -C {repo} config core.fsmonitor /bin/evil-monitor && "
              f"printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > {repo}/.git/hooks/post-merge && "
              f"chmod +x {repo}/.git/hooks/post-merge && sed -i s/hello/bye/ app.py")  # fmt: skip
    srv = model_server([exec_command(attack), message("Done.")])
    call = CodexProvider(srv.llm_config(codex_bin)).propose(PROJECT, wt, "Fix it.")
    assert [c["exit_code"] for c in call.commands] == [0]  # the sandbox let the model write there
    assert call.outcome == "failed"
    assert call.error == "the model changed .git/config and .git/hooks/post-merge of app; restored it"
    assert (repo / ".git" / "config").read_bytes() == config
    assert not (repo / ".git" / "hooks" / "post-merge").exists()
    assert "evil-monitor" not in (repo / ".git" / "config").read_text()


@pytest.mark.codex
def test_codex_home_under_tmp_breaks_the_sandbox_and_says_so(worktree, codex_bin: Path, model_server, tmp_path):
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed: codex then uses its own sandbox, which works under /tmp")
    _, wt = worktree
    home = tmp_path / "codex-home-in-tmp"
    home.mkdir()
    srv = model_server([exec_command("sed -i s/hello/bye/ app.py"), message("I changed app.py.")])
    call = run_codex(srv.llm_config(codex_bin), wt, "Fix it.", writable=True, codex_home=home, timeout=60)
    assert call.outcome == "failed" and call.text == "I changed app.py."
    # codex 0.169 reports the failed command (bwrap's message) in some runs and no command at all in others
    assert (
        call.error and "pimainteno doctor" in call.error and "CODEX_HOME is under a temporary directory" in call.error
    )
    assert ("bwrap: execvp codex-linux-sandbox" in call.error) == bool(call.commands), call.error
    assert (wt / "app.py").read_text() == "GREETING = 'hello'\n"


def test_every_command_failing_with_a_sandbox_error_is_a_failure_not_a_silent_nothing(tmp_path: Path):
    def command(output: str, code: int) -> str:
        item = {"type": "command_execution", "command": "x", "aggregated_output": output, "exit_code": code,
                "status": "completed" if code == 0 else "failed"}  # fmt: skip
        return emit({"type": "item.completed", "item": item})

    done = emit({"type": "item.completed", "item": {"type": "agent_message", "text": "Fixed."}})
    done += emit({"type": "turn.completed", "usage": {}})
    broken = command("bwrap: execvp codex-linux-sandbox: No such file or directory\n", 1)
    call = run_codex(LLMConfig(codex=fake_codex(tmp_path, broken * 2 + done)), tmp_path, "p", writable=True)
    assert call.outcome == "failed" and call.error == (
        "codex could not run any command in its sandbox (bwrap: execvp codex-linux-sandbox: No such file or "
        "directory); check codex's sandbox with `pimainteno doctor` (or `codex sandbox -- true`)"
    )
    one_worked = broken + command("ok\n", 0) + done
    assert run_codex(LLMConfig(codex=fake_codex(tmp_path, one_worked)), tmp_path, "p", writable=True).ok
    plain_failure = command("grep: nothing found\n", 1) + done
    assert run_codex(LLMConfig(codex=fake_codex(tmp_path, plain_failure)), tmp_path, "p", writable=True).ok


@pytest.mark.codex
@pytest.mark.parametrize(
    ("answer", "subject", "text"),
    [
        (json.dumps({"commit_subject": "Say bye instead of hello.", "explanation": "Greets less."}),
         "Say bye instead of hello", "Greets less."),
        ("I changed the greeting.", None, "I changed the greeting."),
        (json.dumps({"explanation": "no subject"}), None, "no subject"),
        (json.dumps(["not", "an", "object"]), None, '["not", "an", "object"]'),
    ],
    ids=["structured", "plain", "no-subject", "not-an-object"],
)  # fmt: skip
def test_patch_run_asks_for_a_structured_answer_and_exposes_the_commit_subject(
    worktree, codex_bin: Path, codex_home: Path, model_server, answer: str, subject: str | None, text: str
):
    _, wt = worktree
    srv = model_server([exec_command("sed -i s/hello/bye/ app.py"), message(answer)])
    call = CodexProvider(srv.llm_config(codex_bin)).propose(PROJECT, wt, "Fix it.")
    assert call.ok, call.error
    assert (call.commit_subject, call.text) == (subject, text)
    fmt = srv.requests[0]["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["schema"] == PATCH_SCHEMA
    assert "commit_subject" in srv.prompts()[-1]


@pytest.mark.codex
def test_summary_is_not_asked_for_a_structured_answer(worktree, codex_bin: Path, codex_home: Path, model_server):
    _, wt = worktree
    srv = model_server([message("A greeter.")])
    call = CodexProvider(srv.llm_config(codex_bin)).summarize(PROJECT, wt)
    assert call.ok and call.text == "A greeter." and call.commit_subject is None
    assert "format" not in (srv.requests[0].get("text") or {})


def test_analytics_are_off_unless_turned_on(tmp_path: Path):
    off = build_argv(LLMConfig(), tmp_path, "p", writable=False)
    assert off[off.index("-c") : off.index("-c") + 2] == ["-c", "analytics.enabled=false"]
    on = types.SimpleNamespace(**{**vars(LLMConfig()), "analytics": True})
    assert "analytics.enabled=false" not in build_argv(on, tmp_path, "p", writable=False)  # type: ignore[arg-type]
    user = LLMConfig(options={"analytics": {"enabled": True}})
    argv = build_argv(user, tmp_path, "p", writable=False)  # the user's own option comes later and wins
    assert argv.index("analytics={enabled = true}") > argv.index("analytics.enabled=false")


@pytest.mark.parametrize(
    ("printed", "warned"),
    [("codex-cli 0.169.0", False), ("codex-cli 0.170.2", False), ("codex-cli 0.171.0", False),
     ("codex-cli 0.168.9", True), ("codex-cli 0.180.0", True), ("codex-cli 1.0.0-beta.1", True), ("huh", True)],
)  # fmt: skip
def test_version_outside_the_tested_range_is_a_warning(tmp_path: Path, printed: str, warned: bool):
    warning = version_warning(LLMConfig(codex=fake_codex(tmp_path, f"echo '{printed}'\n")))
    assert (warning is not None) == warned
    if warned:
        assert "0.169.0 to 0.171.0" in str(warning) and "\n" not in str(warning)


def test_version_is_read_once_and_recorded_on_the_call(tmp_path: Path):
    count = tmp_path / "count"
    body = f'if [ "$1" = --version ]; then echo x >> {count}; echo "codex-cli 0.170.0"; exit 0; fi\n'
    body += emit({"type": "turn.completed", "usage": {}})
    llm = LLMConfig(codex=fake_codex(tmp_path, body))
    calls = [run_codex(llm, tmp_path, "p", writable=False) for _ in range(3)]
    assert [c.codex_version for c in calls] == ["0.170.0"] * 3
    assert count.read_text() == "x\n"
    assert version_warning(llm) is None and count.read_text() == "x\n"


def test_missing_codex_gives_no_version_warning(tmp_path: Path):
    assert version_warning(LLMConfig(codex=str(tmp_path / "none"))) is None


def test_the_guard_of_a_worktree_watches_the_main_repositorys_git_dir(worktree):
    repo, wt = worktree
    assert git.GitDirGuard(wt).root == (repo / ".git").resolve()


def test_npms_codex_version_is_read_from_its_package_without_starting_it(tmp_path: Path, monkeypatch):
    """npm's layout (.bin/codex -> @openai/codex/bin/codex.js beside package.json): no node start for `status`."""
    from pimainteno import procs
    from pimainteno.providers.codex_version import codex_version

    package = tmp_path / "node_modules" / "@openai" / "codex"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text('{"name": "@openai/codex", "version": "0.170.1"}')
    script = package / "bin" / "codex.js"
    script.write_text("#!/bin/sh\necho 'codex-cli 9.9.9'\n")  # what asking would say: not asked
    script.chmod(0o755)
    (tmp_path / "node_modules" / ".bin").mkdir()
    (tmp_path / "node_modules" / ".bin" / "codex").symlink_to("../@openai/codex/bin/codex.js")

    def no_process(*args, **kw):
        raise AssertionError(f"started {args[0]}")

    with monkeypatch.context() as patched:
        patched.setattr(procs, "run", no_process)
        assert codex_version(str(tmp_path / "node_modules" / ".bin" / "codex")) == "0.170.1"
    (package / "package.json").write_text('{"name": "someone-else", "version": "0.170.2"}')
    codex_version.cache_clear()
    assert codex_version(str(script)) == "9.9.9"  # not codex's package: asked
