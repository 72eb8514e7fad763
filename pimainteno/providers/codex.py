"""Run the real ``codex exec --json`` CLI in a worktree and read its JSONL events.

Success is decided from the events (a ``turn.completed`` and no ``turn.failed``), never from the
exit code: codex can exit 0 after a failed turn, or 1 after a fine one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pimainteno.config import LLMConfig
from pimainteno.errors import InputError, ToolError

log = logging.getLogger("pimainteno")

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
_INSTALL = "install it with `npm install -g @openai/codex` or set [llm] codex = PATH"
# API keys meant for OpenAI; codex 0.169's built-in provider reads CODEX_API_KEY, not OPENAI_API_KEY.
_OPENAI_KEY_ENVS = ("OPENAI_API_KEY", "CODEX_API_KEY")


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0


@dataclass
class CodexResult:
    ok: bool = False
    final_message: str = ""
    messages: list[str] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)  # command, exit_code, status
    file_changes: list[str] = field(default_factory=list)
    thread_id: str | None = None
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    exit_status: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    raw_stderr_tail: str = ""


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


def _toml_string(text: str) -> str:
    def esc(ch: str) -> str:
        return _ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)

    return '"' + "".join(map(esc, text)) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def build_argv(llm: LLMConfig, worktree: Path, prompt: str, *, writable: bool) -> list[str]:
    """The ``codex exec --json`` command line; the prompt goes last, after ``--``."""
    if prompt.strip() in ("", "-"):
        raise InputError("the prompt for codex is empty")  # "-" would make codex read stdin
    argv = [llm.codex, "exec", "--json", "-C", str(worktree)]
    argv += ["--sandbox", "workspace-write" if writable else "read-only", "--skip-git-repo-check", "--ephemeral"]
    if llm.model:
        argv += ["-m", llm.model]
    for key, value in llm.options.items():
        argv += ["-c", f"{key}={toml_value(value, key)}"]
    argv += list(llm.extra_args)
    # `--` keeps a prompt starting with "-" (or named like a subcommand, e.g. "review") a prompt.
    return [*argv, "--", prompt]


def find_codex(llm: LLMConfig) -> str:
    """The codex executable as a path, or ToolError with how to install it."""
    name = llm.codex
    if os.sep in name:
        path = Path(name).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        problem = "no such file" if not path.exists() else "not an executable file"
        raise ToolError(f"codex not found: {path} ({problem}); {_INSTALL}")
    found = shutil.which(name)
    if not found:
        raise ToolError(f"codex not found: {name!r} is not on PATH; {_INSTALL}")
    return found


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
) -> CodexResult:
    """Run codex once in ``worktree``; never raises for a failed run, only for a missing codex."""
    argv = build_argv(llm, worktree, prompt, writable=writable)
    argv[0] = find_codex(llm)
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
    log.info("codex: running in %s (%s, timeout %gs)", worktree, "writable" if writable else "read-only", limit)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, cwd=worktree, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
    except OSError as e:
        raise ToolError(f"cannot run codex ({argv[0]}): {e.strerror or e}") from None

    lines: queue.Queue[bytes | None] = queue.Queue()
    stderr_tail: deque[bytes | None] = deque(maxlen=40)
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, lines.put), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, stderr_tail.append), daemon=True),
    ]
    for t in readers:
        t.start()

    state = _Events(worktree)
    deadline = started + limit
    timed_out = False
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            timed_out = True
            log.warning("codex: no result after %gs, stopping it", limit)
            break
        if line is None:
            break
        state.feed(line)
    _stop(proc, timed_out)
    for t in readers:
        t.join(timeout=KILL_GRACE)  # a descendant that escaped the kill may hold a pipe open
    while not lines.empty():  # events that arrived while it was being stopped
        line = lines.get_nowait()
        if line is not None:
            state.feed(line)

    tail = _text(b"".join(b for b in stderr_tail if b))[-2000:]
    result = state.result()
    result.exit_status = proc.returncode
    result.timed_out = timed_out
    result.duration_s = round(time.monotonic() - started, 3)
    result.raw_stderr_tail = tail
    if timed_out:
        result.ok = False
        result.error = f"codex timed out after {limit:g}s"
    elif not state.seen:
        result.error = f"codex output was not codex JSON (is {argv[0]} the codex CLI?): {_last_line(tail)}"
    elif not result.ok and result.error is None:
        result.error = f"codex ended without completing a turn (exit {proc.returncode}): {_last_line(tail)}"
    log.info("codex: %s in %.1fs", "done" if result.ok else f"failed: {result.error}", result.duration_s)
    return result


def _pump(stream: Any, put: Any) -> None:
    try:
        for line in iter(stream.readline, b""):
            put(line)
    except (OSError, ValueError):
        pass
    finally:
        put(None)


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace")


def _last_line(text: str) -> str:
    useful = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Reading additional input")]
    return useful[-1][:300] if useful else "no output on stderr"


def _one_line(text: str) -> str:
    """codex sometimes relays a server's JSON error body verbatim; keep its message, on one line."""
    try:
        data = json.loads(text)
        text = data["error"]["message"] if isinstance(data.get("error"), dict) else data.get("message", text)
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    return " ".join(str(text).split())[:500]


class _Events:
    """Folds the JSONL event stream into a CodexResult."""

    def __init__(self, worktree: Path) -> None:
        self.roots = {str(worktree), str(Path(worktree).resolve())}
        self.seen = False
        self.completed = False
        self.failed: str | None = None
        self.last_error: str | None = None
        self.res = CodexResult()

    def feed(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            log.debug("codex: ignoring non-JSON output: %s", _text(raw).strip()[:200])
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return
        self.seen = True
        kind = event["type"]
        log.debug("codex event: %s", kind)
        if kind == "thread.started":
            self.res.thread_id = event.get("thread_id")
        elif kind == "turn.completed":
            self.completed = True
            u = event.get("usage") or {}
            self.res.usage = Usage(**{k: int(u.get(k) or 0) for k in Usage.__dataclass_fields__})
        elif kind == "turn.failed":
            err = event.get("error")
            self.failed = _one_line((err.get("message") if isinstance(err, dict) else err) or "turn failed")
        elif kind == "error":
            self.last_error = _one_line(event.get("message") or "error")
            log.warning("codex: %s", self.last_error)
        elif kind in ("item.started", "item.completed") and isinstance(event.get("item"), dict):
            self._item(kind, event["item"])

    def _item(self, kind: str, item: dict[str, Any]) -> None:
        itype = item.get("type") or item.get("item_type")
        done = kind == "item.completed"
        if itype in ("agent_message", "assistant_message") and done:
            self.res.messages.append(str(item.get("text") or ""))
        elif itype == "command_execution":
            if not done:
                log.info("codex runs: %s", item.get("command"))
                return
            cmd = {k: item.get(k) for k in ("command", "exit_code", "status")}
            self.res.commands.append(cmd)
            log.info("codex ran (exit %s, %s): %s", cmd["exit_code"], cmd["status"], cmd["command"])
        elif itype == "file_change" and done:
            for change in item.get("changes") or []:
                path = str((change.get("path") if isinstance(change, dict) else change) or "")
                for root in self.roots:  # codex reports absolute paths; keep them relative to the worktree
                    if path.startswith(root + os.sep):
                        path = path[len(root) + 1 :]
                if path and path not in self.res.file_changes:
                    self.res.file_changes.append(path)
                    log.info("codex changed: %s", path)
        elif itype == "error" and done:
            log.info("codex notice: %s", item.get("message"))

    def result(self) -> CodexResult:
        res = self.res
        res.final_message = res.messages[-1] if res.messages else ""
        res.ok = self.completed and self.failed is None
        if self.failed is not None:
            res.error = self.failed
        elif not self.completed and self.last_error:
            res.error = self.last_error
        return res


def _stop(proc: subprocess.Popen[bytes], timed_out: bool) -> None:
    """Wait for codex; on timeout end its process group and descendants (TERM, then KILL)."""
    if not timed_out:
        try:
            proc.wait(timeout=KILL_GRACE * 5)
        except subprocess.TimeoutExpired:
            timed_out = True  # stdout closed but codex lingers: treat like a timeout
    if timed_out:
        # codex runs tool commands in sandboxes with their own sessions, outside our group.
        pids = _descendants(proc.pid)
        _signal(proc.pid, pids, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=KILL_GRACE)
        _signal(proc.pid, pids, signal.SIGKILL)
    else:
        _signal(proc.pid, [], signal.SIGKILL)  # background commands left in codex's group
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE)  # returncode stays None if even SIGKILL could not end it


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _signal(pgid: int, pids: list[int], sig: signal.Signals) -> None:
    for send, target in [(os.killpg, pgid)] + [(os.kill, p) for p in pids]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(target, sig)


# --- the provider --------------------------------------------------------------------------------


class CodexProvider:
    """Summaries, patches and commit messages from `codex exec`; the patch is the worktree's diff."""

    name = "codex"

    def __init__(self, llm: LLMConfig):
        self.llm = llm

    def _call(self, worktree: Path, prompt: str, *, writable: bool) -> Any:
        from pimainteno.providers.base import Call

        result = run_codex(self.llm, worktree, prompt, writable=writable)
        u = result.usage
        outcome = "ok" if result.ok else "timeout" if result.timed_out else "failed"
        error = None if result.ok else (result.error or "codex failed")
        if result.timed_out:
            error = f"codex timed out after {self.llm.timeout:g}s and was stopped"
        return Call(
            outcome=outcome,
            text=result.final_message,
            error=error,
            exit_status=result.exit_status,
            thread_id=result.thread_id,
            model=self.llm.model,
            usage={
                "input_tokens": u.input_tokens,
                "cached_tokens": u.cached_input_tokens,
                "output_tokens": u.output_tokens,
                "reasoning_tokens": u.reasoning_output_tokens,
            },
            prompt_bytes=len(prompt.encode()),
        )

    def summarize(self, project: Any, worktree: Path) -> Any:
        from pimainteno.providers.base import SUMMARY_PROMPT

        return self._call(worktree, SUMMARY_PROMPT, writable=False)

    def propose(self, project: Any, worktree: Path, prompt: str) -> Any:
        return self._call(worktree, prompt, writable=True)

    def commit_message(self, project: Any, worktree: Path, diff: str) -> Any:
        from pimainteno.procs import tail
        from pimainteno.providers.base import COMMIT_PROMPT

        return self._call(worktree, COMMIT_PROMPT + tail(diff, 16_000), writable=False)
