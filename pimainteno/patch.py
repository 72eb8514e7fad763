"""The patch policy, judged on git's own reading of the patch.

`check_patch` makes the few checks git cannot (size, NUL bytes, encoding, CRLF damage, the
`# pimainteno` header, and that people reading the text see every line git acts on), then asks git
what the patch does: `git apply --numstat --summary` for its files and line counts, and an apply
into a temporary index at HEAD (new objects in a temporary directory) for the exact paths and modes
it leaves. The repository is only read. The patch is returned unchanged: apply *that* text.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import unicodedata
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import BinaryIO

from pimainteno import git, gitpatch
from pimainteno.config import PatchPolicy
from pimainteno.gitpatch import Change, Entry, rejected, shown
from pimainteno.words import plural

PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_PATCH_BYTES = 32 * 2**20
_HEADER = re.compile(r"# pimainteno (.*)")
_HEADER_FIELDS = re.compile(r"project=(\S+)(?: proposal=(\d{1,18}))?")
# Lines git reads in a file diff besides hunk lines; anything else there is text git skips.
_GIT_LINE = re.compile(
    r"(diff --git|old mode|new mode|deleted file mode|new file mode|copy from|copy to|rename from|rename to"
    r"|similarity index|dissimilarity index|index) .*|GIT binary patch|Binary files .* differ"
)
_HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_BASE85 = re.compile(r"(literal|delta) \d+|[A-Za-z][0-9A-Za-z!#$%&()*+;<=>?@^_`{|}~-]*")
_MODES = ("000000", "100644", "100755")  # none, regular, executable
_KINDS = {"rename": "renamed", "copy": "copied"}
_PREFIXES = [(a + "/", b + "/") for a in "aciow" for b in "biwo" if a != b]


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
    text: str  # the patch exactly as checked: apply this
    project: str | None = None
    proposal_id: int | None = None

    @property
    def paths(self) -> list[str]:
        """Every path touched, old and new names alike, in patch order."""
        return list(dict.fromkeys(p for f in self.files for p in (f.old_path, f.path) if p))


def read_patch(source: str | None, limit: int = MAX_PATCH_BYTES) -> str:
    """The patch in a file, or on stdin for `-` or None, read as bytes and never more than limit.

    Bytes are kept as they are (no newline translation, so CRLF is judged alike for files and
    stdin); bytes that are not UTF-8 survive as surrogates, for check_patch to refuse by line.
    """
    from pimainteno.errors import InputError

    name = "-" if source in (None, "-") else str(source)
    try:
        if name == "-":
            data = _read_bounded(sys.stdin.buffer, limit)
        else:
            with open(name, "rb") as f:
                data = _read_bounded(f, limit)
    except OSError as e:
        raise InputError(f"cannot read patch {name}: {e.strerror}") from None
    if len(data) > limit:
        raise rejected(f"patch larger than {limit} bytes")
    return data.decode("utf-8", "surrogateescape")


def _read_bounded(stream: BinaryIO, limit: int) -> bytes:
    """At most limit + 1 bytes: one more than allowed is enough to say the patch is too large."""
    chunks, size = [], 0
    while size <= limit and (chunk := stream.read(min(2**20, limit + 1 - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


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


def _starts_file(lines: list[str], i: int) -> bool:
    """Does a file diff start at lines[i] (`diff --git`, or a plain `---` followed by `+++`)?"""
    line, after = lines[i], lines[i + 1] if i + 1 < len(lines) else ""
    return line.startswith("diff --git ") or (line.startswith("--- ") and after.startswith("+++ "))


def read_header(text: str) -> tuple[str | None, int | None]:
    """(project, proposal id) named before the first file diff; (None, None) without a header."""
    lines, found = text.split("\n"), []
    for i, line in enumerate(lines):
        if _starts_file(lines, i):
            break
        if m := _HEADER.fullmatch(line.rstrip("\r")):
            found.append(m[1].strip())
    if len(found) > 1:
        raise rejected("more than one '# pimainteno' header line")
    m = _HEADER_FIELDS.fullmatch(found[0]) if found else None
    if found and not (m and PROJECT_NAME.fullmatch(m[1])):
        raise rejected(f"malformed header line {shown('# pimainteno ' + found[0])}")
    return (m[1], None if m[2] is None else int(m[2])) if m else (None, None)


def _fold(text: str) -> str:
    """What a case-insensitive, normalising file system would see: NFC, then casefolded."""
    return unicodedata.normalize("NFC", text).casefold()


def glob_match(pattern: str, path: str, *, or_parent: bool = False) -> bool:
    """gitignore-like and case-insensitive (casefold + NFC): `**` spans directories, `*` does not, a
    pattern without '/' matches a name at any depth. With or_parent, matching one of path's
    directories counts too."""
    pattern, path = _fold(pattern), _fold(path)
    pat = pattern.strip("/").split("/") + (["**"] if pattern.endswith("/") else [])
    return _match(["**", *pat] if len(pat) == 1 else pat, path.split("/"), 0, 0, or_parent)


def _match(pat: list[str], parts: list[str], i: int, j: int, or_parent: bool) -> bool:
    if i == len(pat):
        return j == len(parts) or (or_parent and j > 0)
    if pat[i] == "**":
        return any(_match(pat, parts, i + 1, k, or_parent) for k in range(j, len(parts) + 1))
    return j < len(parts) and fnmatchcase(parts[j], pat[i]) and _match(pat, parts, i + 1, j + 1, or_parent)


def protected_by(path: str, patterns: tuple[str, ...]) -> str | None:
    """The first pattern that protects path or one of its directories (case-insensitively)."""
    return next((p for p in patterns if glob_match(p, path, or_parent=True)), None)


def _check_path(path: str, root: Path, policy: PatchPolicy) -> None:
    name, parts = shown(path), path.split("/")
    # .git in any case, with NTFS's trailing dots/spaces, HFS's ignored invisible characters, or as GIT~1
    git_ = ("".join(c for c in p if unicodedata.category(c) != "Cf").casefold().rstrip(". ") for p in parts)
    rules = [
        (any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") or c == "\ufffd" for c in path), "contains a control or invisible character"),
        (path.startswith("/"), "is absolute"),
        (".." in parts, "leaves the repository"),
        (any(p in ("", ".") or p != p.strip() for p in parts), "has an empty, '.' or space-padded component"),
        (any(g in (".git", "git~1") for g in git_), "is inside git's own directory (.git)"),
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


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _check_text(text: str) -> None:
    """What git cannot judge: size, emptiness, NUL bytes, encoding and CRLF damage."""
    if len(text) > MAX_PATCH_BYTES or len(text.encode("utf-8", "surrogateescape")) > MAX_PATCH_BYTES:
        raise rejected(f"patch larger than {MAX_PATCH_BYTES} bytes")
    if not text.strip():
        raise rejected("the patch is empty")
    if "\x00" in text:
        raise rejected(f"line {_line_of(text, text.index(chr(0)))} contains a NUL byte")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise rejected(f"line {_line_of(text, e.start)} is not valid UTF-8") from None
    # A git diff of a CRLF file keeps \r in its content lines only; \r on the lines git writes
    # itself (`diff --git`, `@@`) means every line ending was converted on the way.
    if m := re.search(r"^(?:diff --git |@@ -).*\r$", text, re.MULTILINE):
        raise rejected(
            f"line {_line_of(text, m.start())}: CRLF line ending; the patch was damaged in transit (convert it to LF)"
        )


def _check_visible(text: str, entries: list[Entry], moves: dict[str, tuple[str, str]]) -> None:
    """People reading the text see what git does: every line after the first file diff is one git
    reads, the `diff --git` lines name git's files, and the +/- lines are exactly git's count."""
    lines = text.split("\n")
    start = next((i for i in range(len(lines)) if _starts_file(lines, i)), len(lines))
    want = (sum(e[0] or 0 for e in entries), sum(e[1] or 0 for e in entries))
    plus = minus = left_old = left_new = 0  # lines left in the current hunk, as git counts them
    binary, heads = False, []
    for i, line in enumerate(lines[start:], start):
        kind = line[:1]
        if left_old > 0 or left_new > 0:  # inside a hunk every line is content, whatever it starts with
            plus, minus = plus + (kind == "+"), minus + (kind == "-")
            left_old, left_new = left_old - (kind in " -" or not line), left_new - (kind in " +" or not line)
            continue
        if line == "-- ":
            break  # a mail signature (git format-patch): git reads no hunk line after it
        if m := _HUNK.match(line):
            left_old, left_new = (1 if n is None else int(n) for n in m.groups())
        elif line.startswith("diff --git "):
            heads.append((i, line))
            binary = False
        elif not (
            kind in ("", "\\") or line.startswith(("--- ", "+++ ")) or _GIT_LINE.fullmatch(line)
            or (binary and _BASE85.fullmatch(line))
        ):  # fmt: skip
            raise rejected(
                f"line {i + 1}: git skips {shown(line)}, which belongs to no hunk (do the hunk counts add up?)"
            )
        binary = binary or line == "GIT binary patch"
    if (plus, minus) != want:
        raise rejected(
            f"the text shows {plus} added and {minus} removed lines where git reads {want[0]} and {want[1]}"
            " (do the hunk counts add up?)"
        )
    if heads and len(heads) != len(entries):
        raise rejected(plural(len(heads), "'diff --git' line") + f" for the {plural(len(entries), 'file')} git reads")
    for (at, head), (_, _, path) in zip(heads, entries, strict=False):
        old, q = moves[path][1] if path in moves else path, gitpatch.c_quote
        # git apply -p1 drops the a/ and b/ prefixes, or diff.mnemonicPrefix's c/, i/, w/, o/
        if head not in {f"diff --git {q(a + old, n)} {q(b + path, n)}" for a, b in _PREFIXES for n in (True, False)}:
            raise rejected(f"line {at + 1}: {shown(head)} does not name the file git reads ({shown(path)})")


def _check_change(change: Change, kind: str, policy: PatchPolicy) -> None:
    status, old_mode, new_mode, path = change
    name = shown(path)
    if "120000" in (old_mode, new_mode):
        raise rejected(f"{name} is a symlink (mode 120000); patches may not create, change or delete symlinks")
    if "160000" in (old_mode, new_mode):
        raise rejected(f"{name} is a submodule (mode 160000)")
    if bad := next((m for m in (old_mode, new_mode) if m not in _MODES), None):
        raise rejected(f"{name} has the unusual mode {bad}")
    if new_mode == "100755" and old_mode != "100755" and not policy.allow_exec:
        raise rejected(f"{name} would become executable (mode 100755) and allow_exec is off")
    if status == "A" and not policy.allow_new_files:
        raise rejected(f"{name} would be a new file ({kind}) and allow_new_files is off")
    if status == "D" and not policy.allow_delete:
        raise rejected(f"{name} would be removed ({kind}) and allow_delete is off")


def check_patch(
    text: str, repo: Path, policy: PatchPolicy, *, project: str | None = None, timeout: float = git.DEFAULT_TIMEOUT
) -> ParsedPatch:
    """Check a patch against the policy on git's reading of it: the patch (its `text` exactly the
    text given), or PatchRejected with a one-line reason. With `project`, a header naming another
    project is rejected. The repository is only read."""
    _check_text(text)
    name, proposal = read_header(text)
    if project is not None and name is not None and name != project:
        raise rejected(f"the patch is for project {name!r}, not {project!r}")
    root = repo.resolve()
    entries, summary = gitpatch.reading(root, text, timeout)
    if len(entries) > policy.max_files:  # limits first: they also bound the work below
        raise rejected(f"the patch touches {plural(len(entries), 'file')}, more than max_files={policy.max_files}")
    if (changed := sum((a or 0) + (r or 0) for a, r, _ in entries)) > policy.max_lines:
        raise rejected(f"the patch changes {changed} lines, more than max_lines={policy.max_lines}")
    seen: set[str] = set()
    for _, _, path in entries:
        if path in seen:
            raise rejected(f"path {shown(path)} appears in more than one file diff")
        seen.add(path)
    if not policy.allow_binary and (binary := next((p for a, _, p in entries if a is None), None)):
        raise rejected(f"binary patch for {shown(binary)}: allow_binary is off")
    for _, _, path in entries:  # hostile names first, with their own reason
        _check_path(path, root, policy)
    moves = gitpatch.moves(summary, seen)
    for _, old in moves.values():
        _check_path(old, root, policy)
    _check_visible(text, entries, moves)
    effect = gitpatch.effect(root, text, timeout)
    kinds = {old: _KINDS[k] for k, old in moves.values()} | {new: _KINDS[k] for new, (k, _) in moves.items()}
    for status, old_mode, new_mode, path in effect.values():
        if path not in seen and path not in kinds:
            raise rejected(f"git would change {shown(path)}, which no file diff names")
        if path in moves and moves[path][0] == "rename" and (source := effect.get(moves[path][1])):
            old_mode = source[1]  # a renamed file keeps its mode unless the patch changes it
        kind = kinds.get(path) or {"A": "added", "D": "deleted"}.get(status, "modified")
        _check_change((status, old_mode, new_mode, path), kind, policy)
    files = _file_changes(entries, moves, effect)
    return ParsedPatch(files, sum(f.added for f in files), sum(f.removed for f in files), text, name, proposal)


def _file_changes(
    entries: list[Entry], moves: dict[str, tuple[str, str]], effect: dict[str, Change]
) -> list[FileChange]:
    files = []
    for added, removed, path in entries:
        kind, old = moves.get(path, ("", None))
        new_c, old_c = effect.get(path), effect.get(old or path)
        status = _KINDS.get(kind) or {"A": "added", "D": "deleted"}.get(new_c[0] if new_c else "", "modified")
        old_mode, new_mode = (m if m != "000000" else None for m in (old_c and old_c[1], new_c and new_c[2]))
        old_path = old or (None if status == "added" else path)
        files.append(FileChange(path, old_path, status, added or 0, removed or 0, old_mode, new_mode, added is None))
    return files


def git_apply_check(repo: Path, text: str, *, timeout: float = git.DEFAULT_TIMEOUT) -> str | None:
    """`git apply --check` in repo: its first useful error line, or None when the patch applies."""
    try:
        git.git(repo, "apply", "--check", "--verbose", "--whitespace=nowarn", "-", input=text, timeout=timeout)
    except git.GitError as e:
        if e.returncode is None:
            raise
        return gitpatch.git_reason(e.stderr, e.returncode)
    return None
