"""One way to run a subprocess: its own process group, stdin closed, a deadline that bounds wall time.

Everything pimainteno starts (git, codex, fixers, test commands) goes through `run()`. After the
deadline the whole group is ended *and* we stop reading: a grandchild that left the group
(`setsid sleep 40 &`, a hook that daemonizes) and still holds the output pipe is found through
/proc and killed, so wall time never exceeds the timeout by more than about two seconds. The child
is also killed by the kernel when pimainteno itself dies (PR_SET_PDEATHSIG; not a read-only git query), and on SIGTERM
(raised as KeyboardInterrupt) its group is ended before the exception goes on.

The user's test and fixer commands are the only shell strings: they come from the configuration
file, which is trusted like a Makefile. Nothing from a model or a patch reaches a shell.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTPUT_LIMIT = 64_000  # bytes of output kept (the tail: that is where failures are reported)
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL
PIPE_GRACE = 0.5  # how long the pipes may stay open after the command itself exited


@dataclass
class Finished:
    """What one process did. `stdout`/`stderr` are the tails kept (everything when unlimited)."""

    argv: list[str]
    returncode: int | None  # None when it timed out or could not be started
    stdout: bytes
    stderr: bytes
    duration_s: float
    timed_out: bool = False
    error: str | None = None  # the command could not be started

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None


def run(
    argv: list[str],
    *,
    timeout: float,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    merge_stderr: bool = False,
    limit: int | None = OUTPUT_LIMIT,
    on_line: Callable[[bytes], None] | None = None,
    die_with_us: bool = True,
) -> Finished:
    """Run `argv` until it exits or `timeout` seconds pass; never raises for the command's failure.

    `env` is the complete environment (None: ours). `limit` bounds each stream's kept bytes (None:
    keep all). `on_line` gets each complete stdout line as it arrives (codex's JSONL events).
    `die_with_us=False` only for a read-only query that changes nothing (`git rev-parse`): without
    the preexec_fn Python can vfork, about 1 ms less per process, and such a query outliving a
    killed pimainteno by milliseconds does no harm.
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, start_new_session=True, preexec_fn=_dies_with(os.getpid()) if die_with_us else None,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        )  # fmt: skip
    except OSError as e:
        problem = f"no such directory {cwd}" if cwd is not None and not os.path.isdir(cwd) else e.strerror or str(e)
        return Finished(argv, None, b"", b"", time.monotonic() - start, error=f"cannot run {argv[0]}: {problem}")
    try:
        out, err, timed_out = _collect(proc, start + timeout, input, limit, on_line)
    except BaseException:
        _end(proc, _pipe_inodes(proc))
        raise
    code = None if timed_out else proc.returncode
    return Finished(argv, code, out, err, time.monotonic() - start, timed_out)


def _dies_with(parent: int) -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGKILL the child when pimainteno dies, even by SIGKILL (a drain
    killed mid-push must not leave a `git push` finishing behind the next run's back). Linux only."""
    prctl = _prctl()
    if prctl is None:
        return None

    def child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return child


PR_SET_PDEATHSIG = 1
_PRCTL: list[Any] = []


def _prctl() -> Any:
    """libc's prctl, looked up once in the parent (a forked child must not load libraries)."""
    if not _PRCTL:
        try:
            import ctypes

            _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None)
        except (OSError, AttributeError):
            _PRCTL.append(None)
    return _PRCTL[0]


def _collect(
    proc: subprocess.Popen[bytes],
    deadline: float,
    input: bytes | None,
    limit: int | None,
    on_line: Callable[[bytes], None] | None,
) -> tuple[bytes, bytes, bool]:
    streams: dict[Any, bytearray] = {proc.stdout: bytearray()}
    if proc.stderr:
        streams[proc.stderr] = bytearray()
    inodes = _pipe_inodes(proc)
    if input is not None:
        threading.Thread(target=_feed, args=(proc.stdin, input), daemon=True).start()
    sel = selectors.DefaultSelector()
    for stream in streams:
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    partial = bytearray()
    timed_out = False
    stop_at: float | None = None  # once set, read what is left until then and give up on the pipes
    exited_at: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if stop_at is not None and now >= stop_at:
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if stop_at is None and exited_at is None and now >= deadline:
                timed_out = True
                _end(proc, inodes)
                stop_at = time.monotonic() + 0.2
            elif stop_at is None and exited_at is not None and now >= exited_at + PIPE_GRACE:
                _end(proc, inodes)  # a straggler keeps the pipes open: it goes with its parent
                stop_at = time.monotonic() + 0.2
            for key, _ in sel.select(timeout=0.05):
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                buf = streams[key.fileobj]
                buf += data
                if limit is not None and len(buf) > 2 * limit:
                    del buf[:-limit]
                if on_line is not None and key.fileobj is proc.stdout:
                    partial += data
                    if b"\n" in data:
                        *lines, rest = partial.split(b"\n")
                        partial = bytearray(rest)
                        for line in lines:
                            on_line(bytes(line) + b"\n")
                    elif limit is not None and len(partial) > limit:  # a line without end: keep its tail only
                        del partial[:-limit]
    finally:
        sel.close()
        for stream in streams:
            stream.close()
        if proc.stdin:
            with contextlib.suppress(OSError):
                proc.stdin.close()
    if on_line is not None and partial:
        on_line(bytes(partial))
    if not timed_out:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            timed_out = True
    # Whatever is left in its group (background jobs) ends with it; only when the pipes were not
    # drained can a process outside the group still hold them, which is worth a scan of /proc.
    _end(proc, inodes if stop_at is not None else set())
    kept = [bytes(b if limit is None else b[-limit:]) for b in streams.values()]
    return kept[0], kept[1] if len(kept) > 1 else b"", timed_out


def _feed(stdin: object, data: bytes) -> None:
    with contextlib.suppress(OSError, ValueError):
        stdin.write(data)  # type: ignore[attr-defined]
    with contextlib.suppress(OSError, ValueError):
        stdin.close()  # type: ignore[attr-defined]


def _pipe_inodes(proc: subprocess.Popen[bytes]) -> set[int]:
    inodes = set()
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            inodes.add(os.fstat(stream.fileno()).st_ino)  # type: ignore[union-attr]
    return inodes


def _end(proc: subprocess.Popen[bytes], inodes: set[int]) -> None:
    """End the group, its descendants and anything still holding our pipes: TERM, then KILL."""
    alive = proc.poll() is None
    tree = set(descendants(proc.pid)) if alive else set()
    if alive:  # a daemonized grandchild may hold a pipe of our tree (a hook's, under git receive-pack)
        inodes = inodes | _pipes_of(tree | {proc.pid})
    strays = tree | _pipe_holders(inodes)
    if not alive and not strays:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # background jobs that closed their output
        return
    _signal(proc.pid, strays, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE)
    strays |= _pipe_holders(inodes)
    _signal(proc.pid, strays, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE)  # returncode stays None if even SIGKILL could not end it


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End a process started in its own group, and its whole tree: TERM, then KILL (as at a deadline)."""
    _end(proc, set())


def _signal(pgid: int, pids: set[int], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, found through /proc (sandboxes start their own sessions)."""
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


def _pipes_of(pids: set[int]) -> set[int]:
    """The inodes of the anonymous pipes these processes hold."""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("pipe:["):
                        found.add(int(link[6:-1]))
    return found


def _pipe_holders(inodes: set[int]) -> set[int]:
    """Processes (other than us) with one of our pipes open: they inherited it from our child."""
    if not inodes:
        return set()
    targets = {f"pipe:[{i}]" for i in inodes}
    me, found = os.getpid(), set()
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd) in targets:
                    found.add(int(entry.name))
                    break
    return found


# --- the user's commands ---------------------------------------------------------------------------


NOT_FOUND = 127  # the exit status a shell gives a command it could not find
DID_NOT_START = (126, NOT_FOUND)  # ... or found but could not execute (not executable, a bad interpreter)


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
    """A test command or fixer: stdout+stderr merged, the tail kept, the group ended at the deadline."""
    done = run(argv_for(command), timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})}, merge_stderr=True)
    text = done.stdout.decode("utf-8", "replace")
    return CommandResult(done.argv, done.returncode, text, done.duration_s, done.timed_out, done.error)


def tail(text: str, limit: int) -> str:
    """The last `limit` bytes of text (UTF-8), marked when cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return "[... cut ...]\n" + data[-limit:].decode("utf-8", "ignore")
