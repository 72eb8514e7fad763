"""git with argument lists only, never a shell; every call has a deadline that bounds its wall time.

pimainteno's own git commands never run programs that the repository's configuration names: no
fsmonitor, no hooks (except the user's own hooks on `push`), no external diff drivers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from pimainteno import procs
from pimainteno.errors import ToolError

log = logging.getLogger("pimainteno")

DEFAULT_TIMEOUT = 120.0
# Set while pimainteno itself runs git (and by the drain for everything it runs): our post-merge
# hook then queues nothing, so a run's own merge never starts another run. Declared once here.
GUARD_ENV = "PIMAINTENO_ACTIVE"
# Never wait for a password prompt; parse git's messages in one language.
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0", GUARD_ENV: "1"}
PROPOSAL_TRAILER = "Pimainteno-Proposal"
# A hooks directory nobody can create hooks in (a path under a character device): git finds none.
NO_HOOKS = "/dev/null"
_SAFE = ["-c", "core.fsmonitor=false"]
_QUERIES = {"config", "rev-parse"}
_DIFFS = {"diff", "log", "show"}
# Read-only and quick: nothing to stop if pimainteno dies first, so no preexec_fn (procs.run's die_with_us)
_READ_ONLY = {"rev-parse", "symbolic-ref", "merge-base", "rev-list", "cat-file", "for-each-ref", "ls-files"}


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
    user_hooks: bool | None = None,
) -> str:
    """Run `git -C repo ARGS`, return stdout; raise GitError with git's own last line on failure.

    The repository's hooks run only with `user_hooks=True`; by default only for `push` (the user's
    own `pre-push` stays in force). The environment is read at call time.
    """
    sub = _subcommand(args)
    if sub in _DIFFS:  # external diff drivers and textconv filters are programs the config names
        at = args.index(sub) + 1
        args = (*args[:at], "--no-ext-diff", "--no-textconv", *args[at:])
    hooks = sub == "push" if user_hooks is None else user_hooks
    # `config` and `rev-parse` run no program but would report our overrides as the repository's.
    safe = [] if sub in _QUERIES else [*_SAFE, *([] if hooks else ["-c", f"core.hooksPath={NO_HOOKS}"])]
    argv = ["git", "-C", str(repo), *safe, *args]
    done = procs.run(
        argv,
        timeout=timeout,
        env={**os.environ, **_ENV, **(env or {})},
        input=None if input is None else input.encode("utf-8", "surrogateescape"),
        limit=None,
        die_with_us=not _read_only(sub, args),
    )
    if done.error:
        raise GitError("git is not installed (apt-get install git)" if "No such file" in done.error else done.error)
    out = done.stdout.decode("utf-8", "replace")
    err = done.stderr.decode("utf-8", "replace")
    if done.timed_out:
        raise GitError(f"git {sub} in {repo} timed out after {timeout:g}s and was stopped", err)
    if check and done.returncode != 0:
        raise GitError(f"git {sub} in {repo} failed: {_last_line(err or out)}", err, done.returncode, out)
    return out


def _subcommand(args: tuple[str, ...]) -> str:
    """The git subcommand among ARGS, skipping leading `-c key=value` pairs."""
    i = 0
    while i < len(args) and args[i] == "-c":
        i += 2
    return args[i] if i < len(args) else "(none)"


def _read_only(sub: str, args: tuple[str, ...]) -> bool:
    """A query that changes nothing (`symbolic-ref NAME` reads; with a second operand or -d it writes)."""
    if sub not in _READ_ONLY:
        return False
    if sub == "symbolic-ref":
        rest = args[args.index(sub) + 1 :]
        return len([a for a in rest if not a.startswith("-")]) == 1 and not {"-d", "--delete"} & set(rest)
    return True


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


def head_and_branch(repo: Path) -> tuple[str | None, str | None]:
    """HEAD's commit and current_branch() in one git call (a no-change run's budget is two); the
    commit is None when the branch has none yet."""
    out = git(repo, "rev-parse", "HEAD", "--symbolic-full-name", "HEAD", check=False).split()
    if len(out) == 2 and out[1].startswith("refs/heads/"):
        return out[0], out[1].removeprefix("refs/heads/")
    if len(out) == 2 and out[1] == "HEAD":  # detached
        return out[0], None
    return (out[0] if len(out) == 2 else None), current_branch(repo)  # unborn, or HEAD names another ref


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
        if path.exists():  # git could not remove it: by hand, then drop git's record of it
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


# --- the .git guard ------------------------------------------------------------------------------

# What a model run must never change in the main repository: its configuration (fsmonitor, hooks
# path, filter and diff drivers name programs), its hooks, `info/` (attributes, excludes) and refs.
GUARDED = ("config", "config.worktree", "HEAD", "packed-refs", "hooks", "info", "refs")
_Entry = tuple[str, int, bytes]  # kind (file, dir, link, other), mode, content or link target


class GitDirGuard:
    """Fingerprint the shared `.git` of `repo` (a worktree or the repository) now; `restore()` later."""

    def __init__(self, repo: Path) -> None:
        self.root = git_dir(repo, common=True)
        self.before = _scan(self.root)

    def changes(self) -> list[str]:
        """Paths under `.git` that differ from the fingerprint (changed, added or removed)."""
        after = _scan(self.root)
        return sorted(k for k in self.before.keys() | after.keys() if self.before.get(k) != after.get(k))

    def restore(self) -> list[str]:
        """Put every changed path back as it was; return what had changed (empty: nothing did)."""
        changed = self.changes()
        for rel in sorted(changed, key=lambda r: (r.count("/"), r)):  # parents before their children
            path = self.root / rel
            if path.is_symlink() or path.is_file() or (path.exists() and not path.is_dir()):
                path.unlink()
            elif path.is_dir() and self.before.get(rel, ("",))[0] != "dir":
                shutil.rmtree(path)
            entry = self.before.get(rel)
            if entry is None or entry[0] == "other":  # a fifo or socket is not ours to recreate
                continue
            kind, mode, data = entry
            if kind == "dir":
                path.mkdir(exist_ok=True)
            elif kind == "link":
                os.symlink(os.fsdecode(data), path)
                continue
            elif kind == "file":
                path.write_bytes(data)
            os.chmod(path, mode)
        if changed:
            log.warning("restored %s in %s", ", ".join(changed), self.root)
        return changed


def describe_changes(changed: list[str]) -> str:
    """`.git/config and .git/hooks/post-merge` for a message (at most three paths named)."""
    names = [f".git/{rel}" for rel in changed[:3]] + ([f"{len(changed) - 3} more"] if len(changed) > 3 else [])
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _scan(root: Path) -> dict[str, _Entry]:
    found: dict[str, _Entry] = {}
    todo = list(GUARDED)
    while todo:
        rel = todo.pop()
        path = root / rel
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", 0, os.fsencode(os.readlink(path)))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
                todo += [f"{rel}/{name}" for name in os.listdir(path)]
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
            else:
                found[rel] = ("other", stat.S_IMODE(st.st_mode), b"")
        except FileNotFoundError:
            continue
    return found
