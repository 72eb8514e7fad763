"""Run the real ``codex exec --json`` CLI in a worktree; the `codex` provider.

Every run is a bounded process group (`procs.run`), gets a closed stdin, runs with analytics off
unless ``[llm] analytics`` is on, and is watched by a guard on the main repository's `.git`: a run
that changed `.git/config`, hooks, `info/` or refs fails and the change is undone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pimainteno import git, procs
from pimainteno.config import LLMConfig
from pimainteno.errors import InputError, ToolError
from pimainteno.providers.call import Call
from pimainteno.providers.codex_events import DOCTOR_HINT, Events, one_line, text
from pimainteno.providers.codex_version import codex_version, find_codex
from pimainteno.providers.prompts import COMMIT_PROMPT, PATCH_ANSWER, SUMMARY_PROMPT, clean_subject

log = logging.getLogger("pimainteno")

# API keys meant for OpenAI; codex 0.169's built-in provider reads CODEX_API_KEY, not OPENAI_API_KEY.
_OPENAI_KEY_ENVS = ("OPENAI_API_KEY", "CODEX_API_KEY")
# The patch run's final message: codex passes this schema to the model (--output-schema).
PATCH_SCHEMA = {
    "type": "object",
    "properties": {"commit_subject": {"type": "string"}, "explanation": {"type": "string"}},
    "required": ["commit_subject", "explanation"],
    "additionalProperties": False,
}
_TMP_HOME = "Refusing to create helper binaries under temporary dir"
_TMP_HOME_FIX = "CODEX_HOME is under a temporary directory: point it elsewhere (e.g. ~/.codex or /var/tmp)"


# --- argv ---------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any, where: str = "value") -> str:
    """``value`` as a TOML literal, for codex's ``-c key=value`` (nested tables become inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # Python's repr of a float ("1e+16", "inf", "nan") is TOML too
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        parts = [f"{_toml_key(str(k))} = {toml_value(v, f'{where}.{k}')}" for k, v in value.items()]
        return "{" + ", ".join(parts) + "}"
    raise InputError(f"[llm] options: {where}: cannot pass {type(value).__name__} to codex (TOML has no such value)")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(s: str) -> str:
    def esc(ch: str) -> str:
        return _ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)

    return '"' + "".join(map(esc, s)) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def startup_options(llm: LLMConfig) -> list[str]:
    """`-c` overrides for a headless run: no analytics unless asked (5.4 s saved per run offline)."""
    return [] if getattr(llm, "analytics", False) else ["-c", "analytics.enabled=false"]


def build_argv(
    llm: LLMConfig, worktree: Path, prompt: str, *, writable: bool, output_schema: Path | None = None
) -> list[str]:
    """The ``codex exec --json`` command line; the prompt goes last, after ``--``."""
    if prompt.strip() in ("", "-"):
        raise InputError("the prompt for codex is empty")  # "-" would make codex read stdin
    argv = [llm.codex, "exec", "--json", "-C", str(worktree)]
    argv += ["--sandbox", "workspace-write" if writable else "read-only", "--skip-git-repo-check", "--ephemeral"]
    if llm.model:
        argv += ["-m", llm.model]
    if output_schema is not None:
        argv += ["--output-schema", str(output_schema)]
    argv += startup_options(llm)  # before the user's options, which may override them
    for key, value in llm.options.items():
        argv += ["-c", f"{key}={toml_value(value, key)}"]
    argv += list(llm.extra_args)
    # `--` keeps a prompt starting with "-" (or named like a subcommand, e.g. "review") a prompt.
    return [*argv, "--", prompt]


# --- running ------------------------------------------------------------------------------------


def run_codex(
    llm: LLMConfig,
    worktree: Path,
    prompt: str,
    *,
    writable: bool,
    timeout: float | None = None,
    env_extra: dict[str, str] | None = None,
    codex_home: Path | None = None,
    output_schema: dict[str, Any] | None = None,
) -> Call:
    """Run codex once in ``worktree``; never raises for a failed run, only for a missing codex."""
    executable = find_codex(llm)
    if not Path(worktree).is_dir():
        raise InputError(f"worktree {worktree} is not a directory")
    env = {**os.environ, **(env_extra or {})}
    if codex_home is not None:
        env["CODEX_HOME"] = str(codex_home)
    if llm.api_key:  # through the environment only, never argv
        env[llm.api_key_env] = llm.api_key
        if llm.api_key_env in _OPENAI_KEY_ENVS:
            env["CODEX_API_KEY"] = llm.api_key
    limit = llm.timeout if timeout is None else timeout
    version = codex_version(executable)
    log.info("codex %s: running in %s (%s, timeout %gs)", version or "?", worktree,
             "writable" if writable else "read-only", limit)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pimainteno-codex-") as scratch:
        schema = None
        if output_schema is not None:
            schema = Path(scratch) / "schema.json"
            schema.write_text(json.dumps(output_schema))
        argv = build_argv(llm, worktree, prompt, writable=writable, output_schema=schema)
        argv[0] = executable
        events = Events(worktree)
        done = procs.run(argv, timeout=limit, cwd=worktree, env=env, on_line=events.feed)
    if done.error:
        raise ToolError(f"cannot run codex ({executable}): {done.error}")
    stderr = text(done.stderr)[-2000:]
    call = events.result()
    call.exit_status, call.duration_s, call.stderr_tail = done.returncode, round(done.duration_s, 3), stderr
    call.model, call.codex_version, call.prompt_bytes = llm.model, version, len(prompt.encode())
    if done.timed_out:
        call.outcome, call.error = "timeout", f"codex timed out after {limit:g}s"
    elif not events.seen:
        call.outcome = "failed"
        call.error = f"codex output was not codex JSON (is {executable} the codex CLI?): {_last_line(stderr)}"
    elif not call.ok and call.error is None:
        call.error = f"codex ended without completing a turn (exit {done.returncode}): {_last_line(stderr)}"
    if _TMP_HOME in stderr and shutil.which("bwrap", path=env.get("PATH")):
        # With the system bwrap, codex needs a helper in CODEX_HOME: every sandboxed command fails
        # (sometimes without a command event), whatever the model's final message claims.
        if call.ok:
            call.outcome = "failed"
            call.error = f"codex could not set up its sandbox: {_line_with(stderr, _TMP_HOME)}; {DOCTOR_HINT}"
        call.error = f"{call.error}; {_TMP_HOME_FIX}"
    log.info("codex: %s in %.1fs", "done" if call.ok else f"failed: {call.error}", call.duration_s)
    return call


def _line_with(s: str, needle: str) -> str:
    return one_line(next(ln for ln in s.splitlines() if needle in ln))[:300]


def _last_line(s: str) -> str:
    useful = [ln.strip() for ln in s.splitlines() if ln.strip() and not ln.startswith("Reading additional input")]
    return one_line(useful[-1])[:300] if useful else "no output on stderr"


def structured_answer(call: Call) -> Call:
    """Read a patch run's structured final message into `commit_subject` and `text` (the explanation).

    A missing or malformed answer leaves `commit_subject` None and the message as it was.
    """
    try:
        answer = json.loads(call.text)
    except ValueError:
        return call
    if isinstance(answer, dict):
        subject = answer.get("commit_subject")
        call.commit_subject = clean_subject(subject) if isinstance(subject, str) else None
        if isinstance(answer.get("explanation"), str):
            call.text = answer["explanation"]
    return call


# --- the provider --------------------------------------------------------------------------------


class CodexProvider:
    """Summaries, patches and commit messages from `codex exec`; the patch is the worktree's diff."""

    name = "codex"

    def __init__(self, llm: LLMConfig):
        self.llm = llm

    def _call(self, project: Any, worktree: Path, prompt: str, *, writable: bool, schema: Any = None) -> Call:
        """One guarded run: a change to the main repository's `.git` fails it and is undone."""
        guard = git.GitDirGuard(worktree)
        call = run_codex(self.llm, worktree, prompt, writable=writable, output_schema=schema)
        changed = guard.restore()
        if changed:
            call.outcome = "failed"
            call.error = f"the model changed {git.describe_changes(changed)} of {project.name}; restored it"
            log.error("%s: %s", project.name, call.error)
        elif call.timed_out:
            call.error = f"codex timed out after {self.llm.timeout:g}s and was stopped"
        return call

    def summarize(self, project: Any, worktree: Path) -> Call:
        return self._call(project, worktree, SUMMARY_PROMPT, writable=False)

    def propose(self, project: Any, worktree: Path, prompt: str) -> Call:
        call = self._call(project, worktree, prompt + PATCH_ANSWER, writable=True, schema=PATCH_SCHEMA)
        return structured_answer(call) if call.ok else call

    def commit_message(self, project: Any, worktree: Path, diff: str) -> Call:
        return self._call(project, worktree, COMMIT_PROMPT + procs.tail(diff, 16_000), writable=False)
