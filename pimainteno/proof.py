"""What makes a test run a proof: it ran tests, and it left the worktree exactly HEAD + the proposal.

The commit that lands is then built from the proposal's own diff on the recorded HEAD
(`commit_proposal`), never from whatever the worktree holds after the tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pimainteno import sandbox
from pimainteno.errors import PatchRejected, ValidationFailed
from pimainteno.git import GitError, git
from pimainteno.procs import CommandResult

# An empty run, as common runners report it (whole lines, so a test *named* like this does not match).
_NO_TESTS = [
    (re.compile(r"^(=+ )?no tests ran in [\d.]+s( =+)?$", re.M), "pytest ran no tests"),
    (re.compile(r"^Ran 0 tests in ", re.M), "unittest ran no tests (`Ran 0 tests`)"),
    (re.compile(r"^No tests found, exiting with code", re.M), "jest found no tests"),
    (re.compile(r"^Error: No test files found", re.M), "mocha found no tests"),
]
_CARGO_RESULT = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed", re.M)
_GO_PACKAGE = re.compile(r"^(ok|FAIL|\?)\s+\S+\s*(.*)$", re.M)
PYTEST_NO_TESTS = 5  # pytest's exit status when it collected nothing
# git options for the checks: no fsmonitor hook, paths as they are
_SAFE = ("-c", "core.fsmonitor=false", "-c", "core.quotepath=off")


class RepositoryChanged(ValidationFailed):
    """The tests changed HEAD, a ref, the index or a tracked file of the validation worktree."""


@dataclass(frozen=True)
class Expected:
    """The worktree's state before the tests: what it must still be after them."""

    head: str  # the commit the proposal was applied on
    tree: str  # HEAD + the proposal, as git writes it
    refs: str  # branches and tags of the repository, `refname sha` per line
    settings: dict[str, str]  # .git/config, hooks, info/attributes: path -> sha256 of the content


@dataclass(frozen=True)
class Proof:
    """One test run of a proposal: the run, the state it was checked against, and its verdict."""

    result: CommandResult
    expected: Expected  # HEAD and tree the commit must be built on (`commit_proposal`)
    failure: str | None  # why it proves nothing ("the tests failed (exit status 1)"); None: proven


def prove(
    command: str | Sequence[str],
    worktree: Path,
    project: Path,
    patch: str,
    timeout: float,
    *,
    enabled: bool = True,
    network: bool = False,
    writable: Sequence[str | os.PathLike[str]] = (),
) -> Proof:
    """Record, run the tests in the sandbox, check the worktree, judge the run: the whole proof in order.

    The patch is already applied with `git apply --index`. Raises SandboxError when the sandbox
    cannot run and RepositoryChanged when the tests changed the repository.
    """
    expected = record(worktree, patch)
    result = sandbox.run_tests(command, worktree, project, timeout, enabled=enabled, network=network, writable=writable)
    check_unchanged(worktree, expected)
    if result.timed_out:
        failure: str | None = f"the tests timed out after {timeout:g}s"
    else:
        failure = ran_no_tests(result)
        if failure is None and not result.ok:
            failure = result.error or f"the tests failed (exit status {result.exit_status})"
    return Proof(result, expected, failure)


def ran_no_tests(result: CommandResult) -> str | None:
    """Why a test run that exited 0 (or pytest's 5) proved nothing; None when it ran tests."""
    out = result.output
    if result.exit_status == PYTEST_NO_TESTS and ("no tests ran" in out or " deselected" in out):
        return "pytest ran no tests (exit status 5)"
    for pattern, reason in _NO_TESTS:
        if pattern.search(out):
            return reason
    cargo = _CARGO_RESULT.findall(out)
    if cargo and all(passed == failed == "0" for passed, failed in cargo):
        return "cargo test ran no tests (0 passed, 0 failed)"
    go = _GO_PACKAGE.findall(out)
    if go and all(status == "?" and "[no test files]" in rest for status, rest in go):
        return "go test found no test files"
    return None


def expected_tree(repo: Path, head: str, patch: str) -> str:
    """The tree of HEAD + the patch, built in a throwaway index (no working tree is touched)."""
    with _scratch_index() as env:
        git(repo, "read-tree", head, env=env)
        try:
            if not patch.strip():
                return git(repo, "write-tree", env=env).strip()
            git(repo, "apply", "--cached", "--whitespace=nowarn", "-", input=patch, env=env)
        except GitError as e:
            said = next((ln for ln in e.stderr.splitlines() if ln.startswith("error:")), "git apply refused it")
            raise PatchRejected(f"patch rejected: it does not apply at {head[:12]}: {said.strip()}") from None
        return git(repo, "write-tree", env=env).strip()


def record(worktree: Path, patch: str) -> Expected:
    """Before the tests: HEAD, the expected tree, the refs; and check the worktree already is HEAD + patch.

    The caller has applied the patch with `git apply --index` (index and files both hold it).
    """
    head = git(worktree, "rev-parse", "HEAD").strip()
    expected = Expected(head, expected_tree(worktree, head, patch), _refs(worktree), _settings(worktree))
    if git(worktree, "write-tree").strip() != expected.tree or _changed_files(worktree):
        raise ValidationFailed("the validation worktree is not HEAD + the proposal before the tests; not tested")
    return expected


def check_unchanged(worktree: Path, expected: Expected) -> None:
    """After the tests: HEAD, refs, index and tracked files as recorded, or RepositoryChanged.

    Untracked files (build output, caches) are ignored: they never reach the commit. The repository's
    settings are compared first: a hook, filter or fsmonitor planted there would run with git.
    """
    try:
        toplevel = git(worktree, "rev-parse", "--show-toplevel").strip()
    except GitError:
        toplevel = ""
    if not toplevel or not Path(toplevel).samefile(worktree):
        raise RepositoryChanged("the tests changed the repository (the worktree's `.git`)")
    settings = _settings(worktree)
    if settings != expected.settings:
        changed = sorted(
            k for k in settings.keys() | expected.settings.keys() if settings.get(k) != expected.settings.get(k)
        )
        raise RepositoryChanged(f"the tests changed the repository ({changed[0]})")
    head = git(worktree, "rev-parse", "HEAD").strip()
    if head != expected.head:
        subject = git(worktree, "log", "-1", "--format=%h %s", head, check=False).strip()
        raise RepositoryChanged(f"the tests changed the repository (a new commit: {subject or head[:12]})")
    refs = _refs(worktree)
    if refs != expected.refs:
        moved = sorted(set(refs.splitlines()) ^ set(expected.refs.splitlines()))
        raise RepositoryChanged(f"the tests changed the repository (the ref {moved[0].split(' ')[0]})")
    staged = git(worktree, *_SAFE, "diff-index", "--cached", "--name-only", "-z", expected.tree).split("\0")
    if any(staged):
        raise RepositoryChanged(f"the tests changed the repository (staged `{next(p for p in staged if p)}`)")
    changed = _changed_files(worktree)
    if changed:
        raise RepositoryChanged(f"the tests changed the repository (`{changed[0]}`)")


def commit_proposal(repo: Path, expected: Expected, patch: str, message: str, *, author: str) -> str:
    """The commit of exactly the proposal on the recorded HEAD; its sha. No ref or worktree is touched.

    `author` is "Name <email>"; it is the committer too. The tree must be the one the tests proved.
    """
    tree = expected_tree(repo, expected.head, patch)
    if tree != expected.tree:
        raise ValidationFailed("the proposal's tree differs from the one the tests proved; not committed")
    name, _, email = author.partition("<")
    who = {"NAME": name.strip(), "EMAIL": email.rstrip(">").strip()}
    env = {f"GIT_{role}_{key}": value for role in ("AUTHOR", "COMMITTER") for key, value in who.items()}
    return git(repo, "commit-tree", tree, "-p", expected.head, "-F", "-", input=message, env=env).strip()


def _refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags")


def _changed_files(worktree: Path) -> list[str]:
    """Tracked files whose content, mode or presence differs from the index (untracked ones ignored)."""
    out = git(worktree, *_SAFE, "diff", "--name-only", "-z", "--no-ext-diff", "--no-textconv")
    return [p for p in out.split("\0") if p]


def _settings(worktree: Path) -> dict[str, str]:
    """What in the repository's own directory decides what git runs: config, hooks, attributes."""
    common_dir, own_dir = git(worktree, "rev-parse", "--path-format=absolute", "--git-common-dir",
                              "--absolute-git-dir").splitlines()[:2]  # fmt: skip
    common, own = Path(common_dir), Path(own_dir)
    files = [d / name for d in {common, own} for name in ("config", "config.worktree", "info/attributes")]
    hooks = common / "hooks"
    files += sorted(hooks.iterdir()) if hooks.is_dir() else []
    digests = {}
    for path in files:
        if path.is_file():
            name = ".git/" + str(path.relative_to(common)) if path.is_relative_to(common) else str(path)
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@contextlib.contextmanager
def _scratch_index() -> Iterator[dict[str, str]]:
    """A temporary GIT_INDEX_FILE, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="pimainteno-index-") as scratch:
        yield {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
