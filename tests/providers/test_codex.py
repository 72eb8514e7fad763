"""The codex runner against the real codex CLI and a scripted Responses server, in real git repos."""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pimainteno.config import LLMConfig
from pimainteno.errors import InputError, ToolError
from pimainteno.providers.call import Call
from pimainteno.providers.codex import build_argv, run_codex
from tests.conftest import GIT_ENV
from tests.modelserver import MODEL, drop, exec_command, failed, garbage, hang, http_error, message, tokens

pytest_plugins = ["tests.conftest_codex"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))  # codex runs commands in a login shell: keep profiles out
    path = tmp_path / "app"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("GREETING = 'hello'\n")
    (path / "README.md").write_text("# app\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def run(codex_bin: Path, codex_home: Path, repo: Path, model_server):
    """``run(script, prompt, **kwargs) -> (result, server)`` with the real codex in ``repo``."""

    def go(script, prompt="Summarize this project.", *, writable=True, timeout=60.0, **llm):
        srv = model_server(script)
        result = run_codex(srv.llm_config(codex_bin, **llm), repo, prompt, writable=writable, timeout=timeout,
                           codex_home=codex_home)  # fmt: skip
        return result, srv

    return go


def live_processes(marker: str = "", pgid: int | None = None) -> list[str]:
    """Live (not zombie) processes whose command line mentions ``marker`` or in process group ``pgid``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state, _, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(entry.name) == os.getpid() or state == "Z":
            continue
        if (marker and marker in cmdline) or (pgid is not None and int(group) == pgid):
            found.append(f"{entry.name}: {cmdline}")
    return found


def codex_group(repo: Path) -> int | None:
    """The process group of the codex run working in ``repo``, once it has started."""
    for line in live_processes(f"-C {repo} "):
        if " exec --json " in line:
            return os.getpgid(int(line.split(":")[0]))
    return None


# --- the real codex CLI ---------------------------------------------------------------------------


@pytest.mark.codex
def test_summary_message_with_token_usage(run, repo: Path):
    result, srv = run(
        [message("A tiny app that greets.", tokens(1234, 56, cached=200, reasoning=7))],
        "Summarize this project (marker 7f3a).",
        writable=False,
    )
    assert result.ok, result.error
    assert result.text == "A tiny app that greets."
    assert result.messages == ["A tiny app that greets."]
    assert result.usage == {"input_tokens": 1234, "cached_tokens": 200, "output_tokens": 56, "reasoning_tokens": 7}
    assert result.codex_version and result.codex_version[0].isdigit()
    assert result.thread_id and result.error is None and result.exit_status == 0 and not result.timed_out
    assert result.commands == [] and result.file_changes == []
    assert len(srv.requests) == 1
    assert srv.requests[0]["model"] == MODEL and srv.requests[0]["stream"] is True
    assert srv.prompts()[-1] == "Summarize this project (marker 7f3a)."
    assert f"<cwd>{repo}</cwd>" in "".join(srv.prompts())  # codex worked in the worktree
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.codex
def test_exec_command_edits_the_worktree(run, repo: Path):
    cmd = "sed -i 's/hello/goodbye/' app.py && printf 'print(1)\\n' > tool.py && echo edited"
    result, srv = run(
        [exec_command(cmd, text="Editing app.py.", usage=tokens(100, 20)), message("Done.", tokens(300, 40))],
        "Change the greeting.",
    )
    assert result.ok, result.error
    assert set(git(repo, "status", "--porcelain").splitlines()) == {" M app.py", "?? tool.py"}
    diff = git(repo, "diff")
    assert "-GREETING = 'hello'" in diff and "+GREETING = 'goodbye'" in diff
    assert (repo / "tool.py").read_text() == "print(1)\n"
    assert result.messages == ["Editing app.py.", "Done."] and result.text == "Done."
    [command] = result.commands
    assert "sed -i" in command["command"] and command["exit_code"] == 0 and command["status"] == "completed"
    # usage in turn.completed is the running total over both model requests
    assert (result.usage["input_tokens"], result.usage["output_tokens"]) == (400, 60)
    # codex sent the command's output back to the model
    outputs = [i for i in srv.requests[1]["input"] if i.get("type") == "function_call_output"]
    assert len(outputs) == 1 and "edited" in outputs[0]["output"]


@pytest.mark.codex
def test_apply_patch_reports_file_changes_relative_to_the_worktree(run, repo: Path):
    patch = "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: notes.txt\n+hi\n*** Update File: app.py\n@@\n-GREETING = 'hello'\n+GREETING = 'hi'\n*** End Patch\nEOF\n"  # fmt: skip
    result, _ = run([exec_command(patch), message("Patched.")])
    assert result.ok, result.error
    assert sorted(result.file_changes) == ["app.py", "notes.txt"]
    assert set(git(repo, "status", "--porcelain").splitlines()) == {" M app.py", "?? notes.txt"}


@pytest.mark.codex
def test_read_only_sandbox_blocks_edits(run, repo: Path):
    result, srv = run([exec_command("echo x > new.txt; sed -i s/hello/bye/ app.py"), message("Tried.")], writable=False)
    assert result.ok, result.error  # the turn completed; the command failed inside the sandbox
    # (codex 0.169 emits no command_execution event for a command the sandbox denied)
    assert git(repo, "status", "--porcelain") == ""
    output = next(i for i in srv.requests[1]["input"] if i.get("type") == "function_call_output")["output"]
    assert "Read-only file system" in output


@pytest.mark.codex
@pytest.mark.parametrize("prompt", ["-x fix the bug", "review", "--help"])
def test_prompt_that_looks_like_an_option_or_subcommand_is_sent_as_the_prompt(run, prompt: str):
    result, srv = run([message("ok")], prompt)
    assert result.ok, result.error
    assert srv.prompts()[-1] == prompt


@pytest.mark.codex
@pytest.mark.parametrize("env_name", ["OPENAI_API_KEY", "PIMTEST_KEY"])
def test_api_key_reaches_codex_only_through_its_environment(run, codex_bin: Path, repo: Path, env_name: str):
    secret = "sk-pimtest-0123456789secret"
    result, srv = run([message("ok")], env_key=env_name, api_key=secret, api_key_env=env_name)
    assert result.ok, result.error
    assert srv.headers[0]["authorization"] == f"Bearer {secret}"  # codex read it from env_name
    assert secret not in json.dumps(srv.requests)
    llm = srv.llm_config(codex_bin, env_key=env_name, api_key=secret, api_key_env=env_name)
    assert secret not in " ".join(build_argv(llm, repo, "p", writable=True))
    assert secret not in repr(llm)


@pytest.mark.codex
@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        (failed("the model is overloaded (xyz)"), "the model is overloaded (xyz)"),
        (http_error(400, "bad request abc"), "bad request abc"),
        (http_error(500, "boom"), "high demand"),  # codex's own words for a 5xx
        (garbage(), "stream closed before response.completed"),
        (drop(), "stream disconnected before completion"),
    ],
    ids=["response.failed", "http400", "http500", "garbage", "drop"],
)
def test_failures_end_not_ok_with_a_one_line_error(run, turn, expected: str):
    started = time.monotonic()
    result, srv = run([turn])
    assert not result.ok and not result.timed_out
    assert result.error and expected in result.error and "\n" not in result.error
    assert len(srv.requests) == 1  # retries are off: no reconnect storm
    assert time.monotonic() - started < 20


@pytest.mark.codex
@pytest.mark.parametrize("during", ["model request", "command"])
def test_hang_times_out_and_leaves_no_process_behind(run, repo: Path, during: str):
    script = [hang()] if during == "model request" else [exec_command("sleep 313.25"), hang()]
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run, script, timeout=5)
        while (pgid := codex_group(repo)) is None and not future.done():
            time.sleep(0.05)
        result, _ = future.result()
    assert pgid is not None and pgid != os.getpgid(0)
    assert result.timed_out and not result.ok
    assert result.error == "codex timed out after 5s"
    assert time.monotonic() - started < 5 + 5
    deadline = time.monotonic() + 3  # killed processes take a moment to go
    while (left := live_processes(str(repo), pgid) + live_processes("313.25")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []


# --- without codex: a missing binary, impostors, argv ----------------------------------------------


def emit(event: dict) -> str:
    """A shell line printing ``event`` as one JSON line (printf: dash's echo expands backslashes)."""
    return f"printf '%s\\n' '{json.dumps(event)}'\n"


def fake_codex(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-codex"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("name", ["/nonexistent/bin/codex", "codex-not-installed-here", "not-executable"])
def test_missing_codex_is_a_one_line_tool_error(tmp_path: Path, name: str):
    if name == "not-executable":
        name = str(tmp_path / "codex")
        Path(name).write_text("#!/bin/sh\n")
    with pytest.raises(ToolError) as e:
        run_codex(LLMConfig(codex=name), tmp_path, "hi", writable=False, timeout=5)
    assert str(e.value).startswith("codex not found: ")
    assert "npm install -g @openai/codex" in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == 4


def test_output_that_is_not_codex_json_is_not_ok(tmp_path: Path):
    codex = fake_codex(tmp_path, "echo 'Usage: something else'\necho '{\"not\": \"an event\"}'\necho oops >&2\n")
    result = run_codex(LLMConfig(codex=codex), tmp_path, "hi", writable=False, timeout=10)
    assert not result.ok and result.exit_status == 0
    assert result.error == f"codex output was not codex JSON (is {codex} the codex CLI?): oops"


def test_success_is_decided_by_events_and_old_or_unknown_events_are_tolerated(tmp_path: Path):
    events = [
        {"type": "thread.started", "thread_id": "t-1"},
        {"type": "something.new", "payload": 1},
        {"type": "item.completed", "item": {"id": "0", "item_type": "assistant_message", "text": "old style"}},
        {"type": "turn.completed", "usage": {"input_tokens": 5, "output_tokens": 2}},
    ]
    lines = "".join(emit(e) for e in events)
    result = run_codex(LLMConfig(codex=fake_codex(tmp_path, f"echo noise\n{lines}exit 3\n")), tmp_path, "hi",
                       writable=False, timeout=10)  # fmt: skip
    assert result.ok and result.exit_status == 3
    assert result.text == "old style" and result.thread_id == "t-1"
    assert result.usage == {"input_tokens": 5, "cached_tokens": 0, "output_tokens": 2, "reasoning_tokens": 0}

    failed_turn = {"type": "turn.failed", "error": {"message": "quota\n  exceeded"}}
    body = emit(events[0]) + emit(failed_turn) + "exit 0\n"
    result = run_codex(LLMConfig(codex=fake_codex(tmp_path, body)), tmp_path, "hi", writable=False, timeout=10)
    assert not result.ok and result.exit_status == 0 and result.error == "quota exceeded"

    body = emit(events[0]) + "echo 'fatal: boom' >&2\nexit 1\n"
    result = run_codex(LLMConfig(codex=fake_codex(tmp_path, body)), tmp_path, "hi", writable=False, timeout=10)
    assert not result.ok and result.error == "codex ended without completing a turn (exit 1): fatal: boom"


def test_environment_carries_key_and_home_and_stdin_is_closed(tmp_path: Path):
    out = tmp_path / "seen"
    body = (
        f'env > {out}.env\nprintf "%s\\n" "$@" > {out}.argv\ncat > {out}.stdin\necho \'{{"type":"turn.completed"}}\'\n'
    )
    llm = LLMConfig(codex=fake_codex(tmp_path, body), api_key="sk-secret-42", model="m1", timeout=10)
    result = run_codex(llm, tmp_path, "do it", writable=True, codex_home=tmp_path / "ch", env_extra={"EXTRA": "1"})
    assert isinstance(result, Call) and result.ok
    env = dict(line.split("=", 1) for line in Path(f"{out}.env").read_text().splitlines() if "=" in line)
    assert env["OPENAI_API_KEY"] == env["CODEX_API_KEY"] == "sk-secret-42"
    assert env["CODEX_HOME"] == str(tmp_path / "ch") and env["EXTRA"] == "1"
    assert "sk-secret-42" not in Path(f"{out}.argv").read_text()
    assert Path(f"{out}.argv").read_text().splitlines()[-2:] == ["--", "do it"]
    assert Path(f"{out}.stdin").read_text() == ""


def test_build_argv_serialises_options_as_toml(tmp_path: Path):
    options = {
        "model_provider": "pimtest",
        "model_providers": {"pimtest": {"name": "pim test", "base_url": "http://h/v1", "retries": 0, "odd key": True}},
        "model_reasoning_effort": 'say "hi"\\\n\t\x7f',
        "temperature": 0.5,
        "limits": [1e16, float("inf"), -7],
        "sandbox_permissions": ["disk-full-read-access", 3, False],
        "shell_environment_policy.inherit": "all",
    }
    llm = LLMConfig(codex="codex", model="gpt-x", options=options, extra_args=("--color", "never"))
    argv = build_argv(llm, tmp_path, "-starts with a dash", writable=True)
    head = ["codex", "exec", "--json", "-C", str(tmp_path), "--sandbox", "workspace-write", "--skip-git-repo-check",
            "--ephemeral", "-m", "gpt-x", "-c", "analytics.enabled=false"]  # fmt: skip
    assert argv[: len(head)] == head
    assert argv[-4:] == ["--color", "never", "--", "-starts with a dash"]
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert overrides[0] == "analytics.enabled=false" and len(overrides) == len(options) + 1
    assert 'model_providers={pimtest = {name = "pim test", base_url = "http://h/v1", retries = 0, "odd key" = true}}' in overrides  # fmt: skip
    for text in overrides[1:]:  # each is `key=value` with value valid TOML that reads back the same
        key, value = text.split("=", 1)
        assert tomllib.loads(f"v = {value}")["v"] == options[key]

    read_only = build_argv(LLMConfig(codex="codex"), tmp_path, "p", writable=False)
    assert read_only == ["codex", "exec", "--json", "-C", str(tmp_path), "--sandbox", "read-only",
                         "--skip-git-repo-check", "--ephemeral", "-c", "analytics.enabled=false", "--", "p"]  # fmt: skip


@pytest.mark.parametrize("options", [{"x": None}, {"x": {"y": object()}}])
def test_build_argv_refuses_values_toml_cannot_hold(tmp_path: Path, options):
    with pytest.raises(InputError, match="options: x"):
        build_argv(LLMConfig(options=options), tmp_path, "p", writable=True)


@pytest.mark.parametrize("prompt", ["", "  ", "-"])
def test_empty_prompt_is_refused(tmp_path: Path, prompt: str):
    with pytest.raises(InputError, match="prompt"):
        build_argv(LLMConfig(), tmp_path, prompt, writable=True)
