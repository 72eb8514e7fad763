"""git through plumbum: argument lists only, never a shell; every call has a timeout."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from plumbum import local
from plumbum.commands.processes import ProcessTimedOut

from pimainteno.errors import ToolError

log = logging.getLogger("pimainteno")

DEFAULT_TIMEOUT = 120.0
# Set while pimainteno itself runs git (and by the drain for everything it runs): our post-merge
# hook then queues nothing, so a run's own merge never starts another run. Declared once here.
GUARD_ENV = "PIMAINTENO_ACTIVE"
# Never wait for a password prompt; parse git's messages in one language.
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0", GUARD_ENV: "1"}
PROPOSAL_TRAILER = "Pimainteno-Proposal"


class GitError(ToolError):
    def __init__(self, message: str, stderr: str = "", returncode: int | None = None, stdout: str = ""):
        super().__init__(message)
        self.stderr = stderr
        self.stdout = stdout  # `push --porcelain` reports each ref's fate here
        self.returncode = returncode


def git(
    repo: str | os.PathLike[str],
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    env: dict[str, str] | None = None,
) -> str:
    """Run `git -C repo ARGS`, return stdout; raise GitError with git's own last line on failure."""
    cmd = local["git"]["-C", str(repo), *args].with_env(**_ENV, **(env or {}))
    if input is not None:
        cmd = cmd << input
    try:
        code, out, err = cmd.run(retcode=None, timeout=timeout)
    except ProcessTimedOut:
        raise GitError(f"git {args[0]} in {repo} timed out after {timeout:g}s") from None
    except FileNotFoundError:
        raise GitError("git is not installed (apt-get install git)") from None
    if check and code != 0:
        raise GitError(f"git {args[0]} in {repo} failed: {_last_line(err or out)}", err, code, out)
    return str(out)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in lines:  # git's own verdict is usually the first "error:"/"fatal:" line
        if ln.startswith(("fatal:", "error:")):
            return ln
    return lines[-1] if lines else "no output"


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def current_branch(repo: Path) -> str | None:
    out = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
    return out or None


def is_ancestor(repo: Path, sha: str, rev: str = "HEAD") -> bool:
    try:
        git(repo, "merge-base", "--is-ancestor", sha, rev)
    except GitError:
        return False
    return True


def git_dir(repo: Path, common: bool = False) -> Path:
    flag = "--git-common-dir" if common else "--git-dir"
    return (repo / git(repo, "rev-parse", flag).strip()).resolve()


def changed_paths(repo: Path) -> set[str]:
    """Tracked paths with uncommitted changes, staged or not (untracked files are not included)."""
    out = git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=no")
    paths: set[str] = set()
    entries = out.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.add(entry[3:])
        if entry[0] in "RC":  # a rename is followed by its source path
            paths.add(entries[i])
            i += 1
    return paths


def exclude_locally(repo: Path, path: str) -> None:
    """Keep a generated file out of `git status` without touching tracked files (.git/info/exclude)."""
    exclude = git_dir(repo, common=True) / "info" / "exclude"
    line = "/" + path.lstrip("/")
    existing = exclude.read_text() if exclude.exists() else ""
    if line not in existing.splitlines():
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a") as f:
            f.write(("" if existing.endswith("\n") or not existing else "\n") + line + "\n")


# --- worktrees -----------------------------------------------------------------------------------


def reset_worktree(worktree: Path) -> None:
    """Undo whatever a command did to a worktree: tracked files restored, untracked ones removed."""
    git(worktree, "reset", "--quiet", "--hard")
    git(worktree, "clean", "-fdq")


def _worktree_root(state_dir: Path) -> Path:
    root = state_dir / "worktrees"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


@contextlib.contextmanager
def temporary_worktree(repo: Path, state_dir: Path, label: str, rev: str = "HEAD") -> Iterator[Path]:
    """A detached worktree at `rev` outside the project, always removed afterwards.

    Its directory name carries our pid so a later process can prune it if we are killed.
    """
    prune_stale_worktrees(repo, state_dir)
    path = _worktree_root(state_dir) / f"{label}-{os.getpid()}-{secrets.token_hex(3)}"
    git(repo, "worktree", "add", "--detach", "--quiet", str(path), rev)
    try:
        yield path
    finally:
        remove_worktree(repo, path)


def remove_worktree(repo: Path, path: Path) -> None:
    try:
        git(repo, "worktree", "remove", "--force", "--force", str(path), check=False, timeout=60)
    finally:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        git(repo, "worktree", "prune", check=False, timeout=60)


def prune_stale_worktrees(repo: Path, state_dir: Path) -> None:
    """Remove worktrees left behind by pimainteno processes that no longer exist."""
    root = state_dir / "worktrees"
    if not root.is_dir():
        return
    removed = False
    for path in root.iterdir():
        try:
            pid = int(path.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _alive(pid):
            log.info("removing stale worktree %s left by process %d", path, pid)
            shutil.rmtree(path, ignore_errors=True)
            removed = True
    if removed:
        git(repo, "worktree", "prune", check=False, timeout=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Caches that tools leave behind in a worktree are never part of a patch.
JUNK = ("**/__pycache__/**", "**/*.pyc", "**/.pytest_cache/**", "**/.mypy_cache/**", "**/.ruff_cache/**",
        "**/node_modules/**")  # fmt: skip


def worktree_diff(worktree: Path) -> str:
    """Everything changed in the worktree against its HEAD, new files included, as one patch."""
    git(worktree, "add", "--all", "--", ".", *(f":(exclude,glob){p}" for p in JUNK))
    return git(
        worktree, "-c", "core.quotepath=off", "diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "HEAD"
    )


# --- pimainteno's own commits ---------------------------------------------------------------------


def patch_id(repo: Path, diff: str) -> str | None:
    """`git patch-id --stable` of a diff: the same change gets the same id whatever its base or line numbers."""
    out = git(repo, "patch-id", "--stable", input=diff).split()
    return out[0] if out else None


def commit_message(subject: str, proposal_id: int | None, body: str = "") -> str:
    """A commit message: the subject, an optional body, and the `Pimainteno-Proposal: N` trailer."""
    text = subject.strip() + (f"\n\n{body.strip()}" if body.strip() else "")
    return text + (f"\n\n{PROPOSAL_TRAILER}: {proposal_id}\n" if proposal_id is not None else "\n")


def make_commit(repo: Path, message: str, author: str, *, paths: list[str] | None = None) -> str:
    """Commit what is staged (or only ``paths``) as ``author`` ("Name <email>"), hooks skipped; the new sha.

    The identity is passed on the command line so a machine with no git identity can commit.
    """
    name, email = author[: author.index("<")].strip(), author[author.index("<") + 1 : -1]
    only = ["--only", "--", *paths] if paths is not None else []
    git(repo, "-c", f"user.name={name}", "-c", f"user.email={email}", "commit", "--quiet", "--no-verify",
        f"--author={author}", "-F", "-", *only, input=message)  # fmt: skip
    return head(repo)


def fast_forward(repo: Path, sha: str) -> None:
    """Bring ``sha`` into the checkout only as a fast-forward; git refuses rather than overwrite local work."""
    git(repo, "merge", "--ff-only", "--quiet", sha)


def undo_fast_forward(repo: Path, sha: str, previous: str) -> bool:
    """Move the branch back from ``sha`` to ``previous`` if HEAD is still ``sha`` (nothing came after it).

    Uses `reset --keep`, which refuses when local changes are in the way. False when it did nothing.
    """
    if head(repo) != sha:
        return False
    git(repo, "reset", "--keep", "--quiet", previous)
    return True


def revert_commit(worktree: Path, sha: str, message: str, author: str) -> str:
    """Revert ``sha`` in ``worktree`` (its HEAD must contain it) as pimainteno's commit; the revert's sha."""
    git(worktree, "revert", "--no-commit", sha)
    return make_commit(worktree, message, author)
