"""Parse a patch and enforce the patch policy before git ever sees it.

`check_patch` reads the patch strictly (gitdiff.py), checks every path, mode and limit against the
project's PatchPolicy, and returns the patch re-rendered in canonical git form
(`ParsedPatch.text`): apply *that*, so git sees exactly what was checked. unidiff re-reads the
canonical text and must agree on every file.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import unicodedata
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from unidiff import PatchSet

from pimainteno.config import PatchPolicy
from pimainteno.errors import ToolError
from pimainteno.gitdiff import EXECUTABLE, REGULAR, DiffFile, read_diff, rejected, shown, starts_file

PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_PATCH_CHARS = 32 * 2**20
_HEADER = re.compile(r"# pimainteno (.*)")
_HEADER_FIELDS = re.compile(r"project=(\S+)(?: proposal=(\d{1,18}))?")


@dataclass(frozen=True)
class FileChange:
    path: str  # the path after the change (the removed path for a deletion)
    old_path: str | None  # None for an added file
    status: str  # added, modified, deleted, renamed or copied
    added: int = 0
    removed: int = 0
    old_mode: str | None = None
    new_mode: str | None = None
    is_binary: bool = False


@dataclass(frozen=True)
class ParsedPatch:
    files: list[FileChange]
    added: int
    removed: int
    text: str  # the canonical git diff: what was checked, and what to apply
    project: str | None = None
    proposal_id: int | None = None

    @property
    def paths(self) -> list[str]:
        """Every path touched, old and new names alike, in patch order."""
        return list(dict.fromkeys(p for f in self.files for p in (f.old_path, f.path) if p))


def format_patch(diff: str, project: str, proposal_id: int | None, subject: str | None = None) -> str:
    """The diff behind `# pimainteno project=P proposal=N` lines, which git apply skips; '' for no diff."""
    if not PROJECT_NAME.fullmatch(project):
        raise ValueError(f"invalid project name {project!r}")
    if proposal_id is not None and (isinstance(proposal_id, bool) or not 0 <= proposal_id < 10**18):
        raise ValueError(f"invalid proposal id {proposal_id!r}")
    lines = diff.split("\n")
    while lines and lines[0].startswith(("# pimainteno ", "# subject:")):
        lines.pop(0)  # an old header is replaced, never stacked
    if not (body := "\n".join(lines)).strip():
        return ""
    head = [f"# pimainteno project={project}" + ("" if proposal_id is None else f" proposal={proposal_id}")]
    clean = " ".join("".join(c if c.isprintable() else " " for c in subject or "").split())[:200]
    head += [f"# subject: {clean}"] if clean else []
    return "\n".join(head) + "\n" + body + ("" if body.endswith("\n") else "\n")


def read_header(text: str) -> tuple[str | None, int | None]:
    """(project, proposal id) named before the first file diff; (None, None) without a header."""
    lines, found = text.split("\n"), []
    for i, line in enumerate(lines):
        if starts_file(lines, i):
            break
        if m := _HEADER.fullmatch(line.rstrip("\r")):
            found.append(m[1].strip())
    if len(found) > 1:
        raise rejected("more than one '# pimainteno' header line")
    m = _HEADER_FIELDS.fullmatch(found[0]) if found else None
    if found and not (m and PROJECT_NAME.fullmatch(m[1])):
        raise rejected(f"malformed header line {shown('# pimainteno ' + found[0])}")
    return (m[1], None if m[2] is None else int(m[2])) if m else (None, None)


def glob_match(pattern: str, path: str, *, or_parent: bool = False) -> bool:
    """gitignore-like: `**` spans directories, `*` does not, a pattern without '/' matches a name at
    any depth. With or_parent, matching one of path's directories counts too."""
    pat = pattern.strip("/").split("/") + (["**"] if pattern.endswith("/") else [])
    return _match(["**", *pat] if len(pat) == 1 else pat, path.split("/"), 0, 0, or_parent)


def _match(pat: list[str], parts: list[str], i: int, j: int, or_parent: bool) -> bool:
    if i == len(pat):
        return j == len(parts) or (or_parent and j > 0)
    if pat[i] == "**":
        return any(_match(pat, parts, i + 1, k, or_parent) for k in range(j, len(parts) + 1))
    return j < len(parts) and fnmatchcase(parts[j], pat[i]) and _match(pat, parts, i + 1, j + 1, or_parent)


def protected_by(path: str, patterns: tuple[str, ...]) -> str | None:
    """The first pattern that protects path or one of its directories."""
    return next((p for p in patterns if glob_match(p, path, or_parent=True)), None)


def _check_path(path: str, root: Path, policy: PatchPolicy) -> None:
    name, parts = shown(path), path.split("/")
    # .git in any case, with NTFS's trailing dots/spaces, HFS's ignored invisible characters, or as GIT~1
    git = ("".join(c for c in p if unicodedata.category(c) != "Cf").casefold().rstrip(". ") for p in parts)
    rules = [
        (any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in path), "contains a control or invisible character"),
        (path.startswith("/"), "is absolute"),
        (".." in parts, "leaves the repository"),
        (any(p in ("", ".") or p != p.strip() for p in parts), "has an empty, '.' or space-padded component"),
        (any(g in (".git", "git~1") for g in git), "is inside git's own directory (.git)"),
        (len(path) > 4096 or len(parts) > 256 or any(len(p.encode(errors="surrogatepass")) > 255 for p in parts), "is too long"),
    ]  # fmt: skip
    if rule := next((rule for broken, rule in rules if broken), None):
        raise rejected(f"path {name} {rule}")
    if pattern := protected_by(path, policy.protected):
        raise rejected(f"path {name} is protected (matches {pattern!r})")
    for k in range(len(parts)):  # git refuses paths beyond a symlink: say so first, and why
        try:
            if stat.S_ISLNK(os.lstat(root.joinpath(*parts[: k + 1])).st_mode):
                where = (
                    "is a symlink"
                    if k == len(parts) - 1
                    else f"goes through the symlink {shown('/'.join(parts[: k + 1]))}"
                )
                raise rejected(f"path {name} {where} in the repository")
        except (FileNotFoundError, NotADirectoryError):
            break
        except OSError as e:
            raise rejected(f"path {name} cannot be checked ({e.strerror})") from None
    try:
        inside = (root / path).resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise rejected(f"path {name} resolves outside the repository")


def _check_file(f: DiffFile, root: Path, policy: PatchPolicy) -> FileChange:
    f.resolve()
    for path in dict.fromkeys(p for p in (f.old, f.new) if p is not None):
        _check_path(path, root, policy)
    name, modes = shown(f.new or f.old or ""), (f.old_mode, f.new_mode)
    if "120000" in modes:
        raise rejected(f"{name} is a symlink (mode 120000); patches may not create, change or delete symlinks")
    if "160000" in modes or f.gitlink:
        raise rejected(f"{name} is a submodule (mode 160000 or 'Subproject commit' lines)")
    if bad := next((m for m in modes if m not in (None, REGULAR, EXECUTABLE)), None):
        raise rejected(f"{name} has the unusual mode {bad}")
    if f.new_mode == EXECUTABLE and f.old_mode != EXECUTABLE and not policy.allow_exec:
        raise rejected(f"{name} would become executable (mode 100755) and allow_exec is off")
    if f.status in ("added", "renamed", "copied") and not policy.allow_new_files:
        raise rejected(f"{name} would be a new file ({f.status}) and allow_new_files is off")
    if f.status in ("deleted", "renamed") and not policy.allow_delete:
        raise rejected(f"{shown(f.old or '')} would be removed ({f.status}) and allow_delete is off")
    return FileChange(f.new or f.old or "", f.old, f.status, f.added, f.removed, f.old_mode, f.new_mode, f.binary)


def check_patch(text: str, repo: Path, policy: PatchPolicy, *, project: str | None = None) -> ParsedPatch:
    """Check a patch against the policy: the parsed patch, or PatchRejected with a one-line reason.

    With `project`, a header naming another project is rejected. The repository is only read.
    """
    if len(text) > MAX_PATCH_CHARS:
        raise rejected(f"the patch is larger than {MAX_PATCH_CHARS // 2**20} MiB")
    if not text.strip():
        raise rejected("the patch is empty")
    if "\x00" in text:
        raise rejected(f"line {text.count(chr(10), 0, text.index(chr(0))) + 1} contains a NUL byte")
    name, proposal = read_header(text)
    if project is not None and name is not None and name != project:
        raise rejected(f"the patch is for project {name!r}, not {project!r}")
    lines = text.split("\n")
    scanned = read_diff(lines[:-1] if lines[-1] == "" else lines, policy.allow_binary)
    if len(scanned) > policy.max_files:  # limits first: they also bound the work below
        raise rejected(f"the patch touches {len(scanned)} files, more than max_files={policy.max_files}")
    if (changed := sum(f.added + f.removed for f in scanned)) > policy.max_lines:
        raise rejected(f"the patch changes {changed} lines, more than max_lines={policy.max_lines}")
    files, seen = [_check_file(f, repo.resolve(), policy) for f in scanned], set()
    for path in (p for c in files for p in dict.fromkeys(x for x in (c.old_path, c.path) if x)):
        if path in seen:
            raise rejected(f"path {shown(path)} appears in more than one file diff")
        seen.add(path)
    canonical = "".join(f.render() for f in scanned)
    try:
        unidiff = PatchSet(canonical)
        agree = len(unidiff) == len(files) and all(
            (p.added, p.removed, p.is_binary_file) == (c.added, c.removed, c.is_binary) and all(h.is_valid() for h in p)
            for p, c in zip(unidiff, files, strict=False)
        )
    except Exception as e:  # third-party code reading hostile input: any failure is a rejection
        raise rejected(f"malformed diff ({' '.join(str(e).split())[:200]})") from None
    if not agree:
        raise rejected("malformed diff: unidiff reads its files differently")
    return ParsedPatch(files, sum(c.added for c in files), sum(c.removed for c in files), canonical, name, proposal)


def git_apply_check(repo: Path, text: str, *, timeout: float = 120) -> str | None:
    """`git apply --check` in repo: its first useful error line, or None when the patch applies."""
    env = {**os.environ, "LC_ALL": "C", "LANGUAGE": "C", "GIT_TERMINAL_PROMPT": "0"}
    argv = ["git", "apply", "--check", "--verbose", "-"]
    data = text.encode("utf-8", "surrogateescape")
    try:
        proc = subprocess.run(argv, cwd=repo, input=data, capture_output=True, timeout=timeout, env=env, check=False)
    except FileNotFoundError:
        raise ToolError("git is not installed (needed for git apply --check)") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"git apply --check timed out after {timeout:g}s") from None
    if proc.returncode == 0:
        return None
    errors = [ln[7:] for ln in proc.stderr.decode(errors="replace").splitlines() if ln.startswith("error: ")]
    useful = [e for e in errors if not e.endswith(":")]  # not "while searching for:"
    return (useful or errors or [f"git apply --check failed with exit status {proc.returncode}"])[0]
