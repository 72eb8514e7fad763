"""Run the user's trusted commands (test command, fixer) with a timeout that kills the whole group.

These are the only shell strings pimainteno runs: they come from the user's configuration file,
which is trusted like a Makefile. Nothing from a model or a patch reaches a shell.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

OUTPUT_LIMIT = 64_000  # bytes of output kept (the tail: that is where failures are reported)


@dataclass
class CommandResult:
    argv: list[str]
    exit_status: int | None
    output: str
    duration_s: float
    timed_out: bool = False
    error: str | None = None  # the command could not be started

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out and self.error is None


def argv_for(command: str | tuple[str, ...] | list[str]) -> list[str]:
    """A configured command as an argument list: a string goes through /bin/sh (trusted config)."""
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def run_command(
    command: str | tuple[str, ...] | list[str],
    cwd: Path,
    timeout: float,
    env: dict[str, str] | None = None,
) -> CommandResult:
    """Run with stdin closed and stdout+stderr merged; on timeout kill the process group."""
    argv = argv_for(command)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    except OSError as e:
        return CommandResult(argv, None, "", time.monotonic() - start, error=f"cannot run {argv[0]}: {e.strerror}")
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        timed_out = True
    except BaseException:
        kill_group(proc)
        proc.wait()
        raise
    text = out[-OUTPUT_LIMIT:].decode("utf-8", "replace")
    return CommandResult(argv, None if timed_out else proc.returncode, text, time.monotonic() - start, timed_out)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL what is left after two seconds."""
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace or None)
            # the leader is gone; make sure no child of it lingers in the group
            os.killpg(proc.pid, signal.SIGKILL)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            pass
        return


def tail(text: str, limit: int) -> str:
    """The last `limit` bytes of text (UTF-8), marked when cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return "[... cut ...]\n" + data[-limit:].decode("utf-8", "ignore")
