"""The process-group runner with real processes: deadlines bound wall time, strays are ended."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from pimainteno import procs


def alive(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def stray_sleep() -> str:
    """A sleep whose command line is unique to this test (40 s and a random fraction)."""
    return f"40.{secrets.randbelow(10**8):08d}"


def test_command_that_leaves_a_setsid_sleep_behind_returns_at_once_and_the_sleep_is_gone(tmp_path: Path):
    secs = stray_sleep()
    t0 = time.monotonic()
    result = procs.run_command(f"setsid sleep {secs} & echo started", tmp_path, timeout=2)
    wall = time.monotonic() - t0
    assert result.ok and result.output == "started\n", result
    assert wall < 2.0 + 2.0, f"took {wall:.1f}s"
    assert alive(f"sleep {secs}") == []


def test_timeout_kills_the_group_and_a_setsid_grandchild_holding_the_pipe(tmp_path: Path):
    secs, own = stray_sleep(), stray_sleep()
    t0 = time.monotonic()
    result = procs.run_command(f"setsid sleep {secs} & echo waiting; sleep {own}", tmp_path, timeout=2)
    wall = time.monotonic() - t0
    assert result.timed_out and result.exit_status is None and not result.ok
    assert result.output == "waiting\n"
    assert 2.0 <= wall < 2.0 + 2.5, f"took {wall:.1f}s"
    assert alive(f"sleep {secs}") == [] and alive(f"sleep {own}") == []


def test_background_job_that_closed_its_output_ends_with_the_command(tmp_path: Path):
    secs = stray_sleep()
    result = procs.run_command(f"sleep {secs} >/dev/null 2>&1 & true", tmp_path, timeout=10)
    assert result.ok
    deadline = time.monotonic() + 2
    while alive(f"sleep {secs}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(f"sleep {secs}") == []


def test_stdin_is_closed_unless_input_is_given(tmp_path: Path):
    closed = procs.run(["cat"], timeout=5, cwd=tmp_path)
    assert closed.ok and closed.stdout == b"" and closed.duration_s < 3
    given = procs.run(["cat"], timeout=5, cwd=tmp_path, input=b"hello\n")
    assert given.ok and given.stdout == b"hello\n"


def test_streams_are_separate_or_merged_and_lines_arrive_in_order(tmp_path: Path):
    script = "printf 'a\\nb\\n'; echo oops >&2; printf c"
    lines: list[bytes] = []
    apart = procs.run(["/bin/sh", "-c", script], timeout=5, on_line=lines.append)
    assert (apart.returncode, apart.stdout, apart.stderr) == (0, b"a\nb\nc", b"oops\n")
    assert lines == [b"a\n", b"b\n", b"c"]
    merged = procs.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], timeout=5, merge_stderr=True)
    assert (merged.returncode, merged.stdout, merged.stderr, merged.ok) == (3, b"out\nerr\n", b"", False)


def test_only_the_tail_is_kept_within_the_limit(tmp_path: Path):
    done = procs.run(["/bin/sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; echo END"], timeout=10, limit=1000)
    assert done.ok and len(done.stdout) == 1000 and done.stdout.endswith(b"xEND\n")
    everything = procs.run(["/bin/sh", "-c", "head -c 300000 /dev/zero"], timeout=10, limit=None)
    assert len(everything.stdout) == 300000


def test_a_program_that_does_not_exist_is_an_error_not_an_exception(tmp_path: Path):
    done = procs.run([str(tmp_path / "nope")], timeout=5)
    assert not done.ok and done.returncode is None
    assert done.error == f"cannot run {tmp_path / 'nope'}: No such file or directory"
    elsewhere = procs.run(["true"], timeout=5, cwd=tmp_path / "gone")
    assert elsewhere.error == f"cannot run true: no such directory {tmp_path / 'gone'}"


def test_environment_is_the_one_given(tmp_path: Path):
    done = procs.run(["/bin/sh", "-c", 'echo "$ONLY-$HOME"'], timeout=5, env={"ONLY": "yes"})
    assert done.stdout == b"yes-\n"


def test_a_child_dies_with_pimainteno_even_when_it_is_killed(tmp_path: Path):
    """A drain SIGKILLed mid-push must not leave its `git push` (or tests, or a fixer) running on."""
    pidfile = tmp_path / "child.pid"
    code = f"from pimainteno import procs; procs.run(['sh', '-c', 'echo $$ > {pidfile}; exec sleep 30'], timeout=60)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    child = int(pidfile.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=10)

    def running() -> bool:
        try:
            return Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 5
    while running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not running(), "the child outlived its parent"
