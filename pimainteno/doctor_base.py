"""What every doctor check is made of: a Check (ok, warn or fail; what was found; what to do) and the
bounded probes the host and project checks share (doctor.py and doctor_project.py both build on it)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pimainteno.procs import run_command

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: "✓", WARN: "!", FAIL: "✗"}
PROBE_TIMEOUT = 15.0  # seconds per probe (git ls-remote, codex sandbox, bwrap, systemctl)
# never prompt for a password or a host key: a doctor run must not hang on a terminal it does not own
QUIET_GIT = {"GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=10"}


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str  # what was found
    fix: str = ""  # what to do about it ("" when nothing)
    project: str | None = None

    def line(self) -> str:
        where = f"{self.project}: " if self.project else ""
        return f"{MARKS[self.status]} {where}{self.name}: {self.detail}" + (f" — {self.fix}" if self.fix else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[bool, str]:
    result = run_command(argv, cwd or Path("/"), PROBE_TIMEOUT, env=env)
    text = (result.error or result.output).strip()
    if result.timed_out:
        return False, f"no answer within {PROBE_TIMEOUT:g}s"
    return result.ok, text.splitlines()[-1] if text else ""


def first_word(command: str | tuple[str, ...]) -> str:
    if isinstance(command, str):
        words = shlex.split(command)
        words = [w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)]  # VAR=value prefixes
        return words[0] if words else ""
    return command[0]


def command_found(word: str, cwd: Path) -> bool:
    if os.sep in word:
        path = Path(word) if Path(word).is_absolute() else cwd / word
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(word) is not None
