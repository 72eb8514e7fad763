"""The proof sandbox: the project's own tests run with bubblewrap, the patched worktree at the project's path.

What the test command sees (see docs/pipeline.md, "The proof sandbox"):

* the whole host read-only (`--ro-bind / /`), no capabilities (`--cap-drop ALL`, even as root: root
  with CAP_SYS_ADMIN could remount it writable), its own /dev, /proc, pid and IPC namespaces;
* the validation worktree bind-mounted read-write **over the project's own path**, as the working
  directory: editable installs, src layouts and absolute paths in the project's configuration see
  HEAD + the patch, not the unpatched checkout;
* the project's environments (top-level directories holding a `pyvenv.cfg`, and `node_modules`),
  which a fresh worktree lacks, shown read-only at their place;
* the test command's own programs, when they live where the sandbox hides things (/tmp, /run, HOME:
  a virtualenv kept outside the project; PATH's directories; what the project's virtualenvs link
  to), shown read-only — the whole virtualenv for an interpreter;
* git working read-only: the worktree's `.git` file is pointed at a read-only view of the
  repository, so `git status`/`log`/`describe` work and `git add`/`commit` fail;
* a private /tmp and /run (no host sockets from there), a private writable HOME (the real one
  hidden; git's configuration and user-level toolchains shown read-only), no network unless asked,
  no secrets in the environment (`*_API_KEY`, `*_TOKEN`, `*_SECRET`, `*_PASSWORD`);
* `--die-with-parent`: when pimainteno dies or kills it at the deadline, everything started inside
  (daemons started with `setsid` included) dies with the sandbox's pid namespace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pimainteno.errors import SEE_DOCTOR, ConfigError, ToolError
from pimainteno.procs import CommandResult, run_command

INSTALL_HINT = "bubblewrap is not installed: apt install bubblewrap"
GIT_VIEW = "/run/pimainteno-git"  # where the repository is shown read-only inside the sandbox
SPARE_HOME = "/tmp/pimainteno-home"  # HOME inside when the real one does not exist (HOME=/nonexistent)
# Read from the real HOME, read-only: git's configuration and user-level toolchains.
HOME_SHOWN = (".gitconfig", ".config/git", ".local/bin", ".local/lib", ".pyenv", ".cargo/bin", ".cargo/registry",
              ".rustup", ".nvm", "go",
              # virtualenvs kept outside the project: virtualenvwrapper, pipenv, poetry, pipx
              ".virtualenvs", ".local/share/virtualenvs", ".cache/pypoetry/virtualenvs", ".local/pipx")  # fmt: skip
SECRET_NAME = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_PASSWORD)$|^SSH_AUTH_SOCK$")


class SandboxError(ToolError):
    """The sandbox could not be set up or did not start (not a test failure)."""


def problem() -> str | None:
    """Why the proof sandbox cannot run on this host, in one line with the fix; None when it can."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return INSTALL_HINT
    try:
        trial = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-net", "--unshare-pid", "--cap-drop", "ALL",
             "--die-with-parent", "true"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20, start_new_session=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "bubblewrap did not start a sandbox within 20s; check `bwrap --ro-bind / / true` by hand"
    if trial.returncode == 0:
        return None
    return _cannot_start(_first_line(trial.stderr or trial.stdout))


def _cannot_start(said: str) -> str:
    """A start failure, with the host setting most likely behind it."""
    if _sysctl("kernel/unprivileged_userns_clone") == "0":
        fix = "user namespaces are off: sysctl -w kernel.unprivileged_userns_clone=1"
    elif _sysctl("user/max_user_namespaces") == "0":
        fix = "user namespaces are off: sysctl -w user.max_user_namespaces=10000"
    elif _sysctl("kernel/apparmor_restrict_unprivileged_userns") == "1":
        fix = "AppArmor forbids user namespaces: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
    else:
        fix = "check that `bwrap --ro-bind / / true` works for this user"
    return f"bubblewrap cannot start a sandbox ({said}); {fix}"


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "no message")


def run_tests(
    command: str | Sequence[str],
    worktree: Path,
    project: Path,
    timeout: float,
    *,
    enabled: bool = True,
    network: bool = False,
    writable: Sequence[str | os.PathLike[str]] = (),
    env: dict[str, str] | None = None,
) -> CommandResult:
    """Run the project's test command on `worktree`, shown at `project`'s path, inside the sandbox.

    `enabled=False` runs it bare in the worktree, with the user's full rights (unsafe: documented).
    Raises SandboxError when the sandbox cannot be set up or does not start.
    """
    if not enabled:
        return run_command(list(command) if not isinstance(command, str) else command, worktree, timeout, env)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError(INSTALL_HINT)
    worktree, project = worktree.resolve(), project.resolve()
    token = f"pimainteno-sandbox-started-{secrets.token_hex(8)}"
    shown = command if isinstance(command, str) else shlex.join(command)
    with tempfile.TemporaryDirectory(prefix="pimainteno-gitfile-") as scratch:
        argv = [
            bwrap,
            *sandbox_args(worktree, project, network=network, writable=writable, scratch=Path(scratch), env=env,
                          command=command),
            # Prove the sandbox started: bwrap's own errors come before this line, the tests' output after.
            "/bin/sh", "-c", 'printf "%s\\n" "$0"; exec /bin/sh -c "$1"', token, shown,
        ]  # fmt: skip
        result = run_command(argv, worktree, timeout, env)
    if result.error is not None:
        raise SandboxError(f"the proof sandbox did not start: {result.error}; {SEE_DOCTOR}")
    marker = token + "\n"
    if marker in result.output:
        return dataclasses.replace(result, output=result.output.replace(marker, "", 1))
    said = _first_line(result.output)
    if not result.timed_out and len(result.output) < 4096 and (not result.output.strip() or said.startswith("bwrap:")):
        # No marker, and nothing or only bwrap's own (short) complaint: the test command never ran.
        # A long output may have lost the marker from its head; that run did start.
        raise SandboxError(f"the proof sandbox did not start: {_cannot_start(said)}; {SEE_DOCTOR}")
    return result


def sandbox_args(
    worktree: Path,
    project: Path,
    *,
    network: bool,
    writable: Sequence[str | os.PathLike[str]],
    scratch: Path,
    env: dict[str, str] | None = None,
    command: str | Sequence[str] = (),
) -> list[str]:
    """bubblewrap's options (the order matters: later mounts cover earlier ones)."""
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    if network:  # keep name resolution working: /etc/resolv.conf often points into /run
        args += ["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]
    else:
        args += ["--unshare-net"]
    args += ["--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
    args += _home_args(project)
    args += _program_args(command, project)  # after the private /tmp, /run and HOME it must show through; before the
    # worktree, which covers anything of the project the command names (the tests see the patched tree)
    args += ["--bind", str(worktree), str(project)]
    for env_dir in environments(project, worktree):  # a symlinked one is shown as its target
        args += ["--ro-bind", str(env_dir.resolve()), str(project / env_dir.name)]
    args += _git_args(worktree, project, scratch)
    for path in _writable(writable, project):
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", str(project), "--setenv", "TMPDIR", "/tmp", "--unsetenv", "XDG_RUNTIME_DIR"]
    for name in {**os.environ, **(env or {})}:
        if SECRET_NAME.search(name):
            args += ["--unsetenv", name]
    return args


def _program_args(command: str | Sequence[str], project: Path) -> list[str]:
    """The programs the test command names that live under /tmp, /run or HOME, which the sandbox
    replaces with empty ones: shown read-only (a virtualenv whole, so its interpreter finds
    `pyvenv.cfg`). Every absolute path in the command counts, so `sh -c '...' /tmp/venv/bin/python`
    and a wrapper script's arguments show through too, and so do the directories on PATH (an activated
    virtualenv's `python3`) and the interpreters and .pth directories of the project's own virtualenvs."""
    try:
        words = shlex.split(command) if isinstance(command, str) else list(command)
    except ValueError:
        words = [command] if isinstance(command, str) else []
    paths = [Path(found) for word in words for found in ABSOLUTE.findall(word)]
    paths += [Path(d) for d in os.environ.get("PATH", "").split(":") if d.startswith("/")]  # `python3`, `make`...
    for env_dir in environments(project, Path("/nonexistent")):
        paths += [p for p in (env_dir / "bin").glob("python*") if p.is_symlink()]
        for pth in env_dir.glob("lib/python*/site-packages/*.pth"):  # directories a .pth adds to sys.path
            with contextlib.suppress(OSError, UnicodeDecodeError):
                paths += [Path(line) for line in pth.read_text().splitlines() if line.startswith("/")]
    roots: list[Path] = []
    for path in paths:
        for seen in _hops(path):
            root = _hidden_root(seen)
            if root and root not in roots and not any(root.is_relative_to(r) for r in roots):
                roots.append(root)
    return [arg for root in roots for arg in ("--ro-bind", str(root), str(root))]


def _hops(path: Path) -> list[Path]:
    """``path`` and every path its symlinks go through (each must exist inside the sandbox)."""
    hops = [path]
    while hops[-1].is_symlink() and len(hops) < 16:
        hops.append((hops[-1].parent / os.readlink(hops[-1])).absolute())
    return hops


def _hidden_root(path: Path) -> Path | None:
    """What to show of ``path`` when the sandbox hides where it lives: its virtualenv, or itself."""
    hidden = (Path("/tmp"), Path("/run"), Path.home().resolve())
    if not path.exists() or not any(path.is_relative_to(d) for d in hidden):
        return None
    root = next((p for p in (path.parent.parent, path.parent) if (p / "pyvenv.cfg").is_file()), path)
    return None if root in hidden else root


# An absolute path inside a command word (a whole word, or one inside a `sh -c` script)
ABSOLUTE = re.compile(r"(?<![\w.~-])(/[\w.+@%-]+(?:/[\w.+@%-]+)*)")


def _home_args(project: Path) -> list[str]:
    """A private writable HOME at the same path; the real one hidden but for what tools need to read."""
    home = Path.home().resolve()
    if home == Path("/") or not home.exists():
        return ["--dir", SPARE_HOME, "--setenv", "HOME", SPARE_HOME]
    if project == home or home.is_relative_to(project):
        return []
    args = ["--tmpfs", str(home)]
    for name in HOME_SHOWN:
        args += ["--ro-bind-try", str(home / name), str(home / name)]
    return args


def environments(project: Path, worktree: Path) -> list[Path]:
    """The project's top-level environments a fresh worktree lacks: virtualenvs and node_modules."""
    found = []
    try:
        entries = sorted(project.iterdir())
    except OSError:
        return []
    for entry in entries:
        if (worktree / entry.name).exists() or (worktree / entry.name).is_symlink() or not entry.is_dir():
            continue
        if entry.name == "node_modules" or (entry / "pyvenv.cfg").is_file():
            found.append(entry)
    return found


def _git_args(worktree: Path, project: Path, scratch: Path) -> list[str]:
    """Point the worktree's `.git` file at a read-only view of its repository, so git works read-only.

    The `.git` file names a directory under the project's own `.git`, which the worktree now covers.
    """
    try:  # read as git does (gitdir: line, then `commondir`): no git process on every test run
        pointer = (worktree / ".git").read_text().strip()
        if not pointer.startswith("gitdir:"):
            return []
        git_dir = (worktree / pointer.removeprefix("gitdir:").strip()).resolve()
        common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
    except (OSError, ValueError):  # a plain repository (`.git` is a directory), no worktree metadata
        return []
    if not git_dir.is_relative_to(common):
        return []
    shown = scratch / "gitfile"
    shown.write_text(f"gitdir: {GIT_VIEW}/{git_dir.relative_to(common)}\n")
    return ["--ro-bind", str(common), GIT_VIEW, "--ro-bind", str(shown), str(project / ".git")]


def _writable(paths: Sequence[str | os.PathLike[str]], project: Path) -> list[Path]:
    """The configured extra writable paths, checked: absolute, existing, not covering the project."""
    out = []
    for raw in paths:
        path = Path(os.path.expanduser(os.fspath(raw)))
        if not path.is_absolute():
            raise ConfigError(f"sandbox.writable: {raw} is not an absolute path; write it in full (~ allowed)")
        if not path.exists():
            raise ConfigError(f"sandbox.writable: {path} does not exist; create it or remove it from the list")
        path = path.resolve()
        if project == path or project.is_relative_to(path):
            raise ConfigError(f"sandbox.writable: {path} holds the project itself; name a cache directory instead")
        out.append(path)
    return out
