"""`pimainteno install-hook PROJECT` / `uninstall-hook PROJECT`: the git post-merge hook.

In pre-commit's manner: the hook is a small script from pimainteno/templates/post-merge (also at
hooks/post-merge) carrying a marker line and the absolute interpreter path. It goes where git looks
for hooks: `core.hooksPath` when set, else `git rev-parse --git-common-dir`/hooks, shared by all
worktrees. A foreign post-merge hook is renamed post-merge.legacy and run first; uninstall renames
it back, so it is restored byte for byte with its mode. One hook file can serve several projects
(a shared core.hooksPath, worktrees of one repository): it lists them by repository path and queues
a run only for the repository it runs in. The trigger it writes is rendered here from queue.Trigger
(trigger_format), and every value put into it goes through sh_word. See docs/hooks.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pimainteno import git, queue
from pimainteno.config import Project
from pimainteno.errors import InputError, ToolError
from pimainteno.git import GUARD_ENV

log = logging.getLogger("pimainteno")

HOOK = "post-merge"
MARKER = "# pimainteno-hook: post-merge"
PROJECTS = "# pimainteno-projects: "


@dataclass
class HookChange:
    hook: Path
    changed: bool  # False: it was already so
    legacy: Path | None = None  # the foreign hook that runs first (install) or was restored (uninstall)
    hooks_path: bool = False  # the directory comes from core.hooksPath
    remaining: tuple[str, ...] = ()  # projects the hook still serves


def hooks_dir(repo: Path) -> tuple[Path, bool]:
    """Where git runs this repository's hooks from, and whether core.hooksPath chose it."""
    where = git.git(repo, "rev-parse", "--git-path", "hooks").strip()
    configured = git.git(repo, "config", "--get", "core.hooksPath", check=False).strip()
    return (repo / where).resolve(), bool(configured)


def read_projects(hook: Path) -> list[dict[str, str]] | None:
    """The projects our hook serves, or None when the file is absent or not ours (a foreign hook)."""
    if hook.is_symlink() or not hook.is_file():
        return None
    try:
        text = hook.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not any(line.startswith(MARKER) for line in text.splitlines()[:5]):
        return None
    for line in text.splitlines():
        if line.startswith(PROJECTS):
            try:
                entries = json.loads(line[len(PROJECTS) :])
            except ValueError:
                break
            if isinstance(entries, list) and all(isinstance(e, dict) for e in entries):
                return [{k: str(v) for k, v in e.items()} for e in entries]
            break
    return []


def sh_word(value: str, key: str) -> str:
    """The one escaping rule for values rendered into the hook: control characters are refused
    (naming the key), everything else is single-quoted, so `%`, quotes, `$()` and backslashes stay text."""
    bad = next((c for c in value if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        raise InputError(
            f"cannot install the hook: {key} {value!r} contains the control character {bad!r}; "
            "rename it (or change the setting) without it, then install again"
        )
    return shlex.quote(value)


def trigger_format() -> tuple[str, str]:
    """(file name, printf format) of the run the hook queues, `%s` for project, time and id.

    Rendered from queue.Trigger itself, so the sh hook writes byte for byte what queue.py writes.
    """
    marks = ("@@project@@", "@@requested_at@@", "@@id@@")
    t = queue.Trigger(marks[0], "run", "hook", "git pull (post-merge)", requested_at=marks[1], id=marks[2])
    fmt = t.to_json().decode().replace("\\", "\\\\").replace("%", "%%").replace("\n", "\\n")
    for mark in marks:
        fmt = fmt.replace(mark, "%s")
    return f"{t.key.replace(marks[0], '%s')}.json", fmt


def render(entries: list[dict[str, str]], python: str) -> str:
    template = resources.files("pimainteno").joinpath("templates/post-merge").read_text(encoding="utf-8")
    for e in entries:
        if not queue.NAME.fullmatch(e["project"]):
            raise InputError(f"cannot install the hook: {e['project']!r} is not a project name a trigger can carry")
    name, fmt = trigger_format()
    before, _, after = name.partition("%s")
    values = {
        "PROJECTS_JSON": json.dumps(entries),
        "PYTHON": sh_word(python, "the interpreter path"),
        "CASES": "\n".join(
            f"{sh_word(e['path'], 'the project path')}) project={sh_word(e['project'], 'the project name')} "
            f"config={sh_word(e['config'], 'the configuration path')} "
            f"queue={sh_word(e.get('queue', ''), '[queue] dir')} ;;"
            for e in entries
        ),
        "PENDING": f'pending="$queue"/{shlex.quote(before) if before else ""}"$project"{shlex.quote(after) if after else ""}',
        "TRIGGER": shlex.quote(fmt),
        "GUARD": GUARD_ENV,  # the one name git.py sets on pimainteno's own git runs
    }
    return re.sub(r"@(PROJECTS_JSON|PYTHON|CASES|PENDING|TRIGGER|GUARD)@", lambda m: values[m.group(1)], template)


def _entry(project: Project, config_path: Path, queue_dir: Path | None = None) -> dict[str, str]:
    """What the hook needs: it writes the trigger itself into the queue directory known now."""
    entry = {"path": str(project.path.resolve()), "project": project.name, "config": str(config_path.resolve())}
    if queue_dir is not None:
        entry["queue"] = str(queue_dir.resolve())
    return entry


def _same(a: dict[str, str], b: dict[str, str]) -> bool:
    """One repository queues one project; one project of one configuration lives in one place."""
    return a.get("path") == b["path"] or (a.get("project") == b["project"] and a.get("config") == b["config"])


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _refuse_tracked(repo: Path, hook: Path) -> None:
    """A core.hooksPath inside the working tree may hold committed hooks: never rewrite those."""
    try:
        relative = hook.relative_to(repo.resolve())
    except ValueError:
        return
    if git.git(repo, "ls-files", "--", str(relative)).strip():
        raise InputError(
            f"{hook} is committed in {repo} (core.hooksPath); not replacing it: add "
            f"`pimainteno enqueue <project> --source hook` to it, or use the pre-commit entry (docs/hooks.md)"
        )


def _write(hook: Path, text: str) -> None:
    tmp = hook.with_name(f".{hook.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o755)
    os.replace(tmp, hook)


def install_hook(
    project: Project, config_path: Path, *, python: str = sys.executable, queue_dir: Path | None = None
) -> HookChange:
    """Install (or update) the post-merge hook so a pull in the project's repository queues a run.

    The queue directory is written into the hook (default: the one `config_path` names), so
    re-run this after changing `[queue] dir` or `[state] dir`.
    """
    if queue_dir is None:
        from pimainteno.config import load

        queue_dir = load(config_path).queue_dir
    directory, from_hooks_path = hooks_dir(project.path)
    hook, legacy = directory / HOOK, directory / f"{HOOK}.legacy"
    _refuse_tracked(project.path, hook)
    entry = _entry(project, config_path, queue_dir)
    entries = read_projects(hook)
    foreign = entries is None and _exists(hook)
    if foreign and _exists(legacy):
        raise InputError(
            f"{hook} is not pimainteno's and {legacy.name} exists too; not replacing either: "
            "merge them into one hook, then install again"
        )
    entries = sorted([e for e in entries or [] if not _same(e, entry)] + [entry], key=lambda e: e["path"])
    text = render(entries, python)
    served = tuple(e["project"] for e in entries)
    chained = legacy if foreign or _exists(legacy) else None
    if not foreign and _exists(hook) and hook.read_text(encoding="utf-8") == text and os.access(hook, os.X_OK):
        return HookChange(hook, False, chained, from_hooks_path, served)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if foreign:
            os.rename(hook, legacy)  # a rename keeps its bytes and mode for uninstall to restore
        _write(hook, text)
    except OSError as e:
        raise ToolError(f"cannot write {hook}: {e.strerror or e}") from None
    return HookChange(hook, True, chained, from_hooks_path, served)


def uninstall_hook(project: Project, config_path: Path) -> HookChange:
    """Stop queueing runs for this project; the last one out restores the hook that was there before."""
    directory, from_hooks_path = hooks_dir(project.path)
    hook, legacy = directory / HOOK, directory / f"{HOOK}.legacy"
    entries = read_projects(hook)
    entry = _entry(project, config_path)
    if entries is None or not any(_same(e, entry) for e in entries):
        return HookChange(hook, False, None, from_hooks_path, tuple(e["project"] for e in entries or []))
    remaining = [e for e in entries if not _same(e, entry)]
    try:
        if remaining:
            python = _installed_python(hook) or sys.executable
            _write(hook, render(remaining, python))
            return HookChange(hook, True, None, from_hooks_path, tuple(e["project"] for e in remaining))
        if _exists(legacy):
            os.replace(legacy, hook)
            return HookChange(hook, True, hook, from_hooks_path)
        os.unlink(hook)
    except OSError as e:
        raise ToolError(f"cannot change {hook}: {e.strerror or e}") from None
    return HookChange(hook, True, None, from_hooks_path)


def _installed_python(hook: Path) -> str | None:
    for line in hook.read_text(encoding="utf-8").splitlines():
        if line.startswith("PY="):
            words = shlex.split(line[3:])
            return words[0] if words else None
    return None


def describe(change: HookChange, installing: bool, project: str) -> str:
    where = f"{change.hook}" + (" (core.hooksPath)" if change.hooks_path else "")
    if installing:
        verb = "installed" if change.changed else "already installed"
        text = f"{project}: post-merge hook {verb} at {where}"
        if change.legacy:
            text += f"; the hook that was there runs first ({change.legacy.name})"
        return text
    if not change.changed:
        return f"{project}: no pimainteno post-merge hook for it at {where}; nothing to do"
    if change.remaining:
        return f"{project}: removed from the post-merge hook at {where} (it still serves {', '.join(change.remaining)})"
    restored = " and restored the hook that was there before" if change.legacy else ""
    return f"{project}: removed the post-merge hook at {where}{restored}"
