"""Which codex runs and whether it is one pimainteno is tested with: light, for `status` and `doctor`."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from pathlib import Path

from pimainteno import procs
from pimainteno.config import LLMConfig
from pimainteno.errors import SEE_DOCTOR, ToolError

__all__ = ["TESTED_VERSIONS", "codex_version", "find_codex", "version_warning"]
TESTED_VERSIONS = ("0.169.0", "0.171.0")  # the oldest and newest codex the tests ran against
_INSTALL = f"install it with `npm install -g @openai/codex` or set [llm] codex = PATH; {SEE_DOCTOR}"


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


# --- version ------------------------------------------------------------------------------------


_VERSION = re.compile(r"(\d+\.\d+\.\d+\S*)")


@functools.cache
def codex_version(executable: str) -> str | None:
    """The codex version as "0.169.0", read once per process and executable; None if unreadable.

    npm's @openai/codex (bin/codex.js beside its package.json) says it in that file: no process,
    where `codex --version` starts node (~0.17 s, more than all of `status`). Any other codex is asked.
    """
    script = Path(os.path.realpath(executable))
    if script.name == "codex.js":
        try:
            package = json.loads((script.parent.parent / "package.json").read_text())
        except (OSError, ValueError):
            package = {}
        if not isinstance(package, dict):
            package = {}
        version = package.get("version")
        if package.get("name") == "@openai/codex" and isinstance(version, str) and _VERSION.fullmatch(version):
            return version
    done = procs.run([executable, "--version"], timeout=15)
    found = _VERSION.search(done.stdout.decode("utf-8", "replace")) if done.ok else None
    return found.group(1) if found else None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version.split("-")[0])[:3])


def version_warning(llm: LLMConfig) -> str | None:
    """One line for `status`/`doctor` when the codex in use is outside the tested range, else None."""
    try:
        version = codex_version(find_codex(llm))
    except ToolError:
        return None  # a missing codex is reported by whoever needs it
    oldest, newest = TESTED_VERSIONS
    if version is None:
        return f"could not read `{llm.codex} --version`; pimainteno is tested with codex {oldest} to {newest}"
    if _version_key(oldest) <= _version_key(version) <= _version_key(newest):
        return None
    return (
        f"codex {version} is outside the range pimainteno is tested with ({oldest} to {newest}); "
        f"if runs misbehave, install @openai/codex@{newest}"
    )
