"""The host's one configuration: where it lives, writing the starter, adding and removing projects.

Projects are added and removed with tomlkit, so the user's comments, order and layout stay as they
wrote them; every filled-in key carries a comment saying where its value came from.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pimainteno import config
from pimainteno.errors import ConfigError, InputError
from pimainteno.procs import run_command

SYSTEM_CONFIG = Path("/etc/pimainteno") / config.CONFIG_NAME
PROBE_TIMEOUT = 10.0  # seconds for each git/systemctl question asked while adding a project


def host_config_path(explicit: str | os.PathLike[str] | None = None, *, system: bool = False) -> Path:
    """Where `init` writes: --config/PIMAINTENO_CONFIG, else /etc (system) or the user's ~/.config."""
    if explicit:
        return Path(explicit).expanduser()
    if system:
        return SYSTEM_CONFIG
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "pimainteno" / config.CONFIG_NAME


def starter_config(codex_found: bool) -> str:
    """The commented starter: provider codex only when codex is installed, else a fixer command."""
    if codex_found:
        llm = (
            '# "codex" asks the codex CLI (found on PATH); it needs an API key or a local model\n'
            '# (docs/models.md). "command" runs a fixer such as ruff instead and works offline.\n'
            'provider = "codex"\n# model = "gpt-5-codex"\n'
            '# api_key = "sk-..."               # or set OPENAI_API_KEY in the environment\n'
        )
    else:
        llm = (
            "# codex was not found on PATH, so patches come from a fixer command run in a worktree\n"
            '# (install codex — `npm install -g @openai/codex` — and set provider = "codex" to use a model).\n'
            'provider = "command"\n'
            'command = "ruff check --fix --quiet ."   # any command that edits files; its diff is the patch\n'
        )
    template = resources.files("pimainteno").joinpath("templates/starter.toml").read_text()
    return template % {"llm": llm}


def write_starter(path: Path) -> bool:
    """Write the starter at ``path`` unless a file is there; True when written. Loads it back to check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x") as f:  # "x": never overwrite, even when another process writes meanwhile
            f.write(starter_config(shutil.which("codex") is not None))
    except FileExistsError:
        return False
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror}; pass --config FILE to write elsewhere") from None
    try:
        config.load(path)
    except Exception:
        path.unlink()  # a starter that does not load is our bug; leave nothing half-done
        raise
    return True


@dataclass
class Added:
    """A project as `add` wrote it: each key's value and where it came from."""

    name: str
    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # comment lines written after the keys


def _ask(argv: list[str], cwd: Path) -> str | None:
    result = run_command(argv, cwd, PROBE_TIMEOUT)
    return result.output.strip() if result.ok else None


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree containing ``path``, or None."""
    if not path.is_dir():
        return None
    top = _ask(["git", "rev-parse", "--show-toplevel"], path)
    return Path(top) if top else None


def unit_known(unit: str, *, user: bool = False) -> bool:
    """Does systemd (the system's, or the user's) have this unit? False without systemd; no pystemd needed."""
    if shutil.which("systemctl") is None:
        return False
    scope = ["--user"] if user else []
    state = _ask(["systemctl", *scope, "show", "--property=LoadState", "--value", unit], Path("/"))
    return state == "loaded"


def describe_repo(path: Path, name: str | None = None) -> Added:
    """What `add` would write for the repository at ``path``, each value with its source."""
    from pimainteno.detect import detect_test_command

    root = repo_root(path)
    if root is None:
        raise InputError(f"{path} is not inside a git repository; `git init` it or give the repository's path")
    found = Added(name=name or config.name_from_path(root), path=root)
    found.values["name"] = found.name
    found.sources["name"] = "given with --name" if name else "from the directory name"
    found.values["path"] = str(root)
    found.sources["path"] = "git rev-parse --show-toplevel"
    branch = _ask(["git", "symbolic-ref", "--quiet", "--short", "HEAD"], root)
    if branch:
        found.values["branch"], found.sources["branch"] = branch, "the branch checked out when added"
    remotes = (_ask(["git", "remote"], root) or "").split()
    if remotes:
        remote = "origin" if "origin" in remotes else remotes[0]
        found.values["remote"] = remote
        found.sources["remote"] = "git remote" + (
            f" (also: {', '.join(r for r in remotes if r != remote)})" if len(remotes) > 1 else ""
        )
    unit = f"{found.name}.service"
    if unit_known(unit):
        found.values["unit"], found.sources["unit"] = unit, "systemd knows this unit"
    else:
        found.notes.append(
            f'unit = "{unit}"   # the default; systemd does not know it (yet): name the service to restart'
        )
    detected = detect_test_command(root)
    if detected:
        command, how = detected
        for venv in (".venv", "venv"):
            python = root / venv / "bin" / "python"
            if command.startswith("python ") and python.is_file():
                command, how = f"{python} {command[len('python ') :]}", f"{how}; the project's {venv}"
                break
        first, _, rest = command.partition(" ")
        if "/" in first and not first.startswith("/") and (root / first).is_file():
            # the tests run from a fresh worktree, which has no untracked .venv: name the project's own
            command = f"{shlex.quote(str(root / first))} {rest}".rstrip()
        found.values["test"], found.sources["test"] = command, f"detected: {how}"
    return found


def _load_document(path: Path) -> Any:
    import tomlkit

    if path.suffix.lower() == ".json":
        raise InputError(f"{path} is JSON; add and remove edit TOML configurations — edit it by hand")
    try:
        return tomlkit.parse(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; run `pimainteno init` first") from None
    except Exception as e:  # tomlkit's parse errors have no common public base
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def _save(path: Path, document: Any) -> None:
    """Write atomically, then load it as every command would; restore the old text if that fails."""
    import tomlkit

    old = path.read_text()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(tomlkit.dumps(document))
    os.replace(tmp, path)
    try:
        config.load(path)
    except Exception:
        path.write_text(old)
        raise


def add_project(config_path: Path, found: Added) -> Added:
    """Append ``found`` as a [[project]] table; refuse a name or path that is already configured."""
    import tomlkit

    current = config.load(config_path)
    for p in current.projects:
        if p.name == found.name:
            raise InputError(
                f"a project named {found.name!r} is already in {config_path}; pass --name to choose another"
            )
        if p.path.resolve() == found.path.resolve():
            raise InputError(f"{found.path} is already in {config_path} as project {p.name!r}")
    document = _load_document(config_path)
    table = tomlkit.table()
    for key, value in found.values.items():
        table.add(key, value)
        table[key].comment(found.sources[key])
    for note in found.notes:
        table.add(tomlkit.comment(note))
    table.add(tomlkit.nl())
    projects = document.get("project")
    if projects is None:
        projects = tomlkit.aot()
        projects.append(table)
        document.append("project", projects)
    else:
        projects.append(table)
    _save(config_path, document)
    return found


def remove_project(config_path: Path, name: str) -> Path:
    """Delete the [[project]] table named ``name`` (by name or by its directory's name); its path."""
    current = config.load(config_path)
    project = current.project(name)  # the one-line "unknown project (known: ...)" error
    document = _load_document(config_path)
    tables = document.get("project") or []
    for i, table in enumerate(tables):
        path = config_path.parent.resolve() / Path(os.path.expandvars(str(table.get("path", "")))).expanduser()
        if table.get("name", config.name_from_path(path)) == name:
            del tables[i]
            if not len(tables):
                del document["project"]
            _save(config_path, document)
            return project.path
    raise InputError(f"{name!r} comes from [scheduler] projects in {config_path}; remove its path there")
