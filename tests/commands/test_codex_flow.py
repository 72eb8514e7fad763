"""summarize / propose / run with the real codex CLI against a scripted Responses-API server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pimainteno import db, errors
from pimainteno.providers.codex import toml_value
from tests.commands.project import TESTS, fingerprint, toml_list
from tests.conftest import make_repo, run_cli, run_git
from tests.modelserver import ModelServer, exec_command, failed, hang, message, tokens

pytestmark = pytest.mark.codex
SECRET = "sk-pimainteno-test-0123456789"


def configure(tmp_path: Path, srv: ModelServer, codex_bin: Path, *, extra_llm: str = "", mode: str = "push") -> Path:
    from pimainteno.commands.demo import make_sample

    repo, _ = make_sample(tmp_path)
    llm = srv.llm_config(codex_bin)
    options = "\n".join(f"{k} = {toml_value(v)}" for k, v in llm.options.items())
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\nprovider = "codex"\ncodex = "{codex_bin}"\nmodel = "{llm.model}"\napi_key = "{SECRET}"\n'
        f"timeout = 20\n{extra_llm}\n[llm.options]\n{options}\n\n"
        f'[[project]]\nname = "app"\npath = "{repo}"\nbranch = "main"\ntest = {toml_list(TESTS)}\nmode = "{mode}"\n'
    )
    return repo


def calls(tmp_path: Path) -> list[dict[str, Any]]:
    d = db.open_db(tmp_path / "state" / "pimainteno.db")
    return [dict(r) for r in d.query("select * from llm_calls order by id")]


EDIT = "sed -i 's/^import os$//' demo_app/convert.py && printf 'Converted with care.\\n' > NOTES.md"


def test_summary_propose_and_commit_message_through_codex(tmp_path: Path, codex_bin: Path, codex_home: Path) -> None:
    with ModelServer([
        message("# app\n\nConverts temperatures.", usage=tokens(300, 40, cached=100, reasoning=5)),
        exec_command(EDIT),
        message("Removed an unused import and added notes."),
        message("Remove the unused os import and add notes"),
    ]) as srv:  # fmt: skip
        repo = configure(tmp_path, srv, codex_bin)
        before = fingerprint(repo)
        summary = run_cli("summarize", "app")
        assert summary.returncode == 0, summary.stderr
        assert summary.stdout == "# app\n\nConverts temperatures.\n"
        cached = run_cli("summarize", "app")
        assert cached.stdout == summary.stdout and len(srv.requests) == 1  # no request for the cached one

        proposed = run_cli("propose", "app", "--reason", "tidy up")
        assert proposed.returncode == 0, proposed.stderr
        patch = proposed.stdout
        assert "-import os" in patch and "+++ b/NOTES.md" in patch and "+Converted with care." in patch
        check = subprocess.run(["git", "-C", str(repo), "apply", "--check", "-"], input=patch, text=True)
        assert check.returncode == 0
        assert fingerprint(repo) == before  # the project's own tree is byte-for-byte unchanged

        prompt = srv.prompts()[-1] if srv.prompts() else ""
        assert any("## Why now\n\ntidy up" in p for p in srv.prompts()), prompt
        assert any("Converts temperatures." in p for p in srv.prompts())

        assert run_cli("apply", input=patch).returncode == 0
        committed = run_cli("commit", "app")
        assert committed.returncode == 0, committed.stderr
        assert run_git(repo, "log", "-1", "--format=%s") == "Remove the unused os import and add notes\n"

        rows = calls(tmp_path)
        assert [(r["purpose"], r["outcome"]) for r in rows] == [
            ("summary", "ok"), ("patch", "ok"), ("commit-message", "ok")
        ]  # fmt: skip
        first = rows[0]
        assert (first["input_tokens"], first["output_tokens"], first["cached_tokens"], first["reasoning_tokens"]) == (
            300, 40, 100, 5
        )  # fmt: skip
        assert all(r["thread_id"] for r in rows) and all(r["provider"] == "codex" for r in rows)
        version = subprocess.run([str(codex_bin), "--version"], capture_output=True, text=True).stdout.split()[-1]
        assert [r["codex_version"] for r in rows] == [version] * 3
        assert rows[1]["prompt_bytes"] and rows[1]["prompt_bytes"] <= 32_000
        # the key reached codex (as the Bearer header) but never a prompt or the database
        for body in srv.requests:
            assert SECRET not in json.dumps(body)
        dump = subprocess.run(["sqlite3", str(tmp_path / "state" / "pimainteno.db"), ".dump"], capture_output=True,
                              text=True).stdout if Path("/usr/bin/sqlite3").exists() else ""  # fmt: skip
        raw = (tmp_path / "state" / "pimainteno.db").read_bytes()
        assert SECRET.encode() not in raw and SECRET not in dump


def test_turn_failed_is_one_line_and_recorded(tmp_path: Path, codex_bin: Path, codex_home: Path) -> None:
    with ModelServer([failed("the model is overloaded")]) as srv:
        repo = configure(tmp_path, srv, codex_bin)
        before = fingerprint(repo)
        result = run_cli("summarize", "app")
        assert result.returncode == errors.TOOL_FAILED
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: codex could not summarize app: ") and "overloaded" in last
        assert [(r["purpose"], r["outcome"]) for r in calls(tmp_path)] == [("summary", "failed")]
        assert "overloaded" in calls(tmp_path)[0]["error"]
        assert fingerprint(repo) == before
        assert not list((tmp_path / "state" / "worktrees").iterdir())


def test_hung_model_is_stopped_at_the_timeout(tmp_path: Path, codex_bin: Path, codex_home: Path) -> None:
    with ModelServer([hang()]) as srv:
        configure(tmp_path, srv, codex_bin)
        text = (tmp_path / "PiMainteno.toml").read_text().replace("timeout = 20", "timeout = 3")
        (tmp_path / "PiMainteno.toml").write_text(text)
        result = run_cli("summarize", "app")
        assert result.returncode == errors.TOOL_FAILED
        assert "timed out after 3s" in result.stderr
        row = calls(tmp_path)[0]
        assert row["outcome"] == "timeout" and row["duration_s"] < 3 + 8


def test_missing_codex_is_one_line_and_recorded(tmp_path: Path, codex_bin: Path, codex_home: Path) -> None:
    with ModelServer([]) as srv:
        configure(tmp_path, srv, codex_bin)
        text = (tmp_path / "PiMainteno.toml").read_text().replace(f'codex = "{codex_bin}"', 'codex = "/nowhere/codex"')
        (tmp_path / "PiMainteno.toml").write_text(text)
        result = run_cli("summarize", "app")
        assert result.returncode == errors.TOOL_FAILED
        assert result.stderr.strip().splitlines()[-1].startswith("Error: codex not found")
        assert [(r["purpose"], r["outcome"]) for r in calls(tmp_path)] == [("summary", "error")]


def test_failed_commit_message_falls_back_and_the_run_still_lands(tmp_path: Path, codex_bin: Path,
                                                                  codex_home: Path) -> None:  # fmt: skip
    with ModelServer([
        message("# app"), exec_command("sed -i 's/^import os$//' demo_app/convert.py"), message("done"),
        failed("no more"),
    ]) as srv:  # fmt: skip
        repo = configure(tmp_path, srv, codex_bin)
        result = run_cli("run", "app")
        assert result.returncode == 0, result.stdout + result.stderr
        assert run_git(repo, "log", "-1", "--format=%s") == "Update convert.py\n"
        assert run_git(tmp_path / "remote.git", "rev-parse", "main") == run_git(repo, "rev-parse", "HEAD")
        assert [r["outcome"] for r in calls(tmp_path)] == ["ok", "ok", "failed"]


def test_model_that_edits_nothing_proposes_nothing(tmp_path: Path, codex_bin: Path, codex_home: Path) -> None:
    with ModelServer([message("# app"), message("Nothing to change.")]) as srv:
        repo = make_repo(tmp_path / "unused")  # a second repository that must stay untouched
        configure(tmp_path, srv, codex_bin)
        result = run_cli("propose", "app", "--reason", "check")
        assert result.returncode == 0 and result.stdout == ""
        assert "changed nothing" in result.stderr
        assert run_git(repo, "status", "--porcelain") == ""


def test_model_that_arms_the_main_git_fails_propose_loudly_and_nothing_runs(tmp_path: Path, codex_bin: Path,
                                                                           codex_home: Path) -> None:  # fmt: skip
    ran = tmp_path / "fsmonitor-ran"
    with ModelServer() as srv:
        repo = configure(tmp_path, srv, codex_bin)
        monitor = tmp_path / "monitor.sh"
        monitor.write_text(f"#!/bin/sh\necho ran >> {ran}\n")
        monitor.chmod(0o755)
        attack = (f"git -C {repo} config core.fsmonitor {monitor} && "
                  f"printf '#!/bin/sh\\necho hook >> {ran}\\n' > {repo}/.git/hooks/post-merge && "
                  f"chmod +x {repo}/.git/hooks/post-merge && sed -i 's/^import os$//' demo_app/convert.py")  # fmt: skip
        srv.script[:] = [message("# app"), exec_command(attack), message("Done.")]
        config = (repo / ".git" / "config").read_bytes()
        result = run_cli("propose", "app")
        assert result.returncode == errors.TOOL_FAILED, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last == (
            "Error: codex failed to propose a patch for app: the model changed .git/config and "
            ".git/hooks/post-merge of app; restored it"
        )
        assert (repo / ".git" / "config").read_bytes() == config
        assert not (repo / ".git" / "hooks" / "post-merge").exists()
        assert not ran.exists()  # neither the fsmonitor nor the hook ever ran
        row = calls(tmp_path)[-1]
        assert (row["purpose"], row["outcome"]) == ("patch", "failed") and "restored it" in row["error"]
