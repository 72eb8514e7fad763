"""Read a git diff the way `git apply` does, only stricter, and render it back in canonical form.

Git takes names from `---`/`+++` and `rename`/`copy` lines (stripping one directory, squashing
slashes), unidiff from the `diff --git` line, and both skip text between files. To leave a hostile
patch no room between what is checked and what is applied, every line must belong to a header, a
hunk or a binary section, all names must agree, and `render` writes exactly the names and modes
that were read. The policy lives in patch.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pimainteno.errors import PatchRejected

_EXTENDED = re.compile(
    r"(old mode|new mode|deleted file mode|new file mode|copy from|copy to|rename from|rename to"
    r"|similarity index|dissimilarity index|index) (.*)"
)
_HUNK = re.compile(r"@@ -(\d{1,9})(?:,(\d{1,9}))? \+(\d{1,9})(?:,(\d{1,9}))? @@(.*)")
_INDEX = re.compile(r"[0-9a-f]{4,64}\.\.[0-9a-f]{4,64}(?: (\S+))?")
_BINARY = re.compile(
    r"(?:(?:literal|delta) \d{1,12}\n(?:[A-Za-z](?:[0-9A-Za-z!#$%&()*+;<=>?@^_`{|}~-]{5})+\n)+\n){1,2}"
)
_GITLINK = re.compile(r"[-+ ]Subproject commit [0-9a-f]{7,64}")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r'\\([0-3][0-7]{2}|[abtnvfr"\\])|\\')
_ESCAPES = dict(zip('abtnvfr"\\', (7, 8, 9, 10, 11, 12, 13, 34, 92), strict=True))
_SAFE_NAME = re.compile(r"[A-Za-z0-9._/+@=,~%:-]+")
_PATCH_SYNTAX = ("diff --", "--- ", "+++ ", "@@ -", "GIT binary patch", "Binary files ")  # git acts on these
_NO_NEWLINE = "\\ No newline at end of file"
REGULAR, EXECUTABLE = "100644", "100755"


def rejected(reason: str) -> PatchRejected:
    return PatchRejected(f"patch rejected: {reason}")


def shown(text: str) -> str:
    """A name quoted on one line, whatever characters it holds."""
    return repr(text if len(text) <= 120 else text[:117] + "...")


def starts_file(lines: list[str], i: int) -> bool:
    """Does a file diff start at lines[i] (`diff --git`, or a plain `---` followed by `+++`)?"""
    line, after = lines[i], lines[i + 1] if i + 1 < len(lines) else ""
    return line.startswith("diff --git ") or (line.startswith("--- ") and after.startswith("+++ "))


def _unquote(text: str, whole: bool = False) -> tuple[str, int]:
    """Decode the git C-quoted name at the start of text: (name, index after the closing quote)."""
    m = _QUOTED.match(text)
    if not m or (whole and m.end() != len(text)):
        raise rejected(f"malformed quoted name {shown(text)}")

    def byte(e: re.Match[str]) -> str:
        if e[1] is None:
            raise rejected(f"bad escape in quoted name {shown(text)}")
        b = int(e[1], 8) if e[1][0].isdigit() else _ESCAPES[e[1]]
        return chr(b) if b < 128 else chr(0xDC00 + b)  # a raw byte, rebuilt by surrogateescape

    try:
        return _ESCAPE.sub(byte, m[1]).encode("utf-8", "surrogateescape").decode("utf-8"), m.end()
    except UnicodeError:
        raise rejected(f"quoted name {shown(m[0])} is not valid UTF-8") from None


def _plain_name(text: str) -> str:
    """A name filling the whole text: quoted, or taken literally (as git reads 'rename from')."""
    return _unquote(text, whole=True)[0] if text.startswith('"') else text


def _quote(name: str) -> str:
    """Quote a name as git does (and a little more), so git and unidiff both read it unambiguously."""
    if _SAFE_NAME.fullmatch(name):
        return name
    esc = {c: f"\\{c}" if c in '"\\' else c if c.isascii() and c.isprintable() else "" for c in set(name)}
    return '"' + "".join(esc[c] or "".join(f"\\{b:03o}" for b in c.encode()) for c in name) + '"'


def _strip1(name: str) -> str:
    """Drop the a/ or b/ prefix as `git apply -p1` does."""
    if (k := name.find("/")) <= 0:
        raise rejected(
            f"path {shown(name)} is absolute" if k == 0 else f"file name {shown(name)} has no a/ or b/ prefix"
        )
    return name[k + 1 :]


@dataclass
class DiffFile:
    """One file's diff: as read, then (after `resolve`) the paths, status and modes git will use."""

    line: int
    header: str | None  # what follows "diff --git ", None for a plain ---/+++ diff
    ext: dict[str, str] = field(default_factory=dict)  # extended header lines
    dashes: bool = False  # has ---/+++ lines, whose names follow (None: /dev/null)
    old: str | None = None
    new: str | None = None
    body: list[str] = field(default_factory=list)
    binary: bool = False
    gitlink: bool = False  # has "Subproject commit" lines
    added: int = 0
    removed: int = 0
    status: str = ""
    old_mode: str | None = None
    new_mode: str | None = None

    def resolve(self) -> None:
        """Settle old/new paths, status and modes as git will read them; reject inconsistencies."""
        e, at = self.ext, f"line {self.line}: "
        kind = next((k for k in ("rename", "copy") if f"{k} from" in e or f"{k} to" in e), "")
        new_file, deleted, modes = "new file mode" in e, "deleted file mode" in e, "old mode" in e or "new mode" in e
        if bool(kind) + new_file + deleted > 1 or (modes and (new_file or deleted)):
            raise rejected(at + "inconsistent header lines (new, deleted, rename, copy, mode)")
        if kind:
            if f"{kind} from" not in e or f"{kind} to" not in e:
                raise rejected(at + f"'{kind} from' without '{kind} to'")
            old: str | None = _plain_name(e[f"{kind} from"])
            new: str | None = _plain_name(e[f"{kind} to"])
            if self.dashes and (self.old, self.new) != (old, new):
                raise rejected(at + f"the '---'/'+++' names differ from the {kind} names")
        elif self.dashes:
            old, new = self.old, self.new
            if old is not None and new is not None and old != new:
                raise rejected(at + f"'---' and '+++' name different files ({shown(old)}, {shown(new)})")
            if old is new is None or (self.header is not None and ((old is None, new is None) != (new_file, deleted))):
                raise rejected(at + "'/dev/null' must go with 'new file mode' or 'deleted file mode'")
        else:
            if len(same := [a for a, b in _header_pairs(self.header or "") if a == b]) != 1:
                raise rejected(at + "cannot tell the file name from the 'diff --git' line")
            old, new = (None if new_file else same[0]), (None if deleted else same[0])
        if self.header is not None and (old or new, new or old) not in _header_pairs(self.header):
            raise rejected(at + "the 'diff --git' line does not match the file names")
        if not (index := _INDEX.fullmatch(e.get("index", "0000..0000"))):
            raise rejected(at + f"malformed index line {shown(e['index'])}")
        old_mode = e.get("old mode") or e.get("deleted file mode")
        new_mode = e.get("new mode") or e.get("new file mode")
        if ("old mode" in e) != ("new mode" in e) or (index[1] and (modes or new_file or deleted)):
            raise rejected(at + "inconsistent mode lines")
        if index[1]:
            old_mode = new_mode = index[1]  # the mode the file keeps
        if self.header is None:  # a plain diff has no modes: spell out what git assumes
            old_mode, new_mode = (REGULAR if new is None else None), (REGULAR if old is None else None)
        if bad := next((m for m in (old_mode, new_mode) if m is not None and not re.fullmatch(r"[0-7]{6}", m)), None):
            raise rejected(at + f"invalid mode {shown(bad)}")
        status = {"rename": "renamed", "copy": "copied"}.get(kind, "modified")
        status = "added" if old is None else "deleted" if new is None else status
        if not (self.body or status != "modified" or old_mode != new_mode):
            raise rejected(at + f"{shown(old or '')} has no changes")
        self.old, self.new, self.status = old, new, status
        self.old_mode, self.new_mode = old_mode, new_mode

    def render(self) -> str:
        """The canonical git diff of this (resolved) file."""
        a, b, e = self.old or self.new or "", self.new or self.old or "", self.ext
        kind = "rename" if "rename from" in e else "copy" if "copy from" in e else ""
        score = e.get("similarity index", "") if kind else ""
        out = [f"diff --git {_quote('a/' + a)} {_quote('b/' + b)}"]
        out += [f"old mode {self.old_mode}", f"new mode {self.new_mode}"] if "old mode" in e else []
        out += [f"deleted file mode {self.old_mode}"] if self.new is None else []
        out += [f"new file mode {self.new_mode}"] if self.old is None else []
        out += [f"similarity index {score}"] if re.fullmatch(r"\d{1,3}%", score) else []
        out += [f"{kind} from {_quote(a)}", f"{kind} to {_quote(b)}"] if kind else []
        out += [f"index {e['index']}"] if "index" in e else []
        if self.dashes:
            out += ["--- " + ("/dev/null" if self.old is None else _quote("a/" + a))]
            out += ["+++ " + ("/dev/null" if self.new is None else _quote("b/" + b))]
        return "\n".join(out + self.body) + "\n"


def _header_pairs(header: str) -> list[tuple[str, str]]:
    """Every (old, new) reading of a 'diff --git' line, a/ and b/ stripped."""
    pairs, splits = [], [m.start() for m in re.finditer(r' (?="?[^/ "]+/)', header)]
    if len(splits) > 64:  # real names have a few; thousands would only cost time
        raise rejected(f"'diff --git' line {shown(header)} is too ambiguous to read")
    for k in splits:
        try:
            pairs.append((_strip1(_plain_name(header[:k])), _strip1(_plain_name(header[k + 1 :]))))
        except PatchRejected:
            continue
    return pairs


def read_diff(lines: list[str], allow_binary: bool) -> list[DiffFile]:
    """The file diffs in lines (free text is allowed only before the first), each to be resolved."""
    return _Scanner(lines, allow_binary).files()


class _Scanner:
    def __init__(self, lines: list[str], allow_binary: bool) -> None:
        self.lines, self.i, self.allow_binary = lines, 0, allow_binary

    def peek(self) -> str | None:
        return self.lines[self.i] if self.i < len(self.lines) else None

    def fail(self, reason: str) -> PatchRejected:
        return rejected(f"line {min(self.i + 1, len(self.lines))}: {reason}")

    def take(self) -> str:
        """The current header line, consumed."""
        line = self.lines[self.i]
        if line.endswith("\r"):
            raise self.fail("CRLF line ending; the patch was damaged in transit (convert it to LF)")
        if len(line) > 8192:
            raise self.fail("header line longer than 8192 characters")
        self.i += 1
        return line

    def files(self) -> list[DiffFile]:
        out: list[DiffFile] = []
        signature = False  # after a mail signature ("-- ") only free text may follow
        while (line := self.peek()) is not None:
            if not signature and starts_file(self.lines, self.i):
                out.append(self.file())
            elif line.startswith(_PATCH_SYNTAX):
                raise self.fail(f"patch line {shown(line)} outside any file diff")
            elif out and not signature and line not in ("", "\r", "-- "):
                raise self.fail(f"unexpected line {shown(line)} outside any hunk (do the hunk counts add up?)")
            else:
                signature, self.i = signature or bool(out and line == "-- "), self.i + 1
        if not out:
            raise rejected("not a unified diff: no 'diff --git' or '---'/'+++' file header found")
        return out

    def file(self) -> DiffFile:
        line = self.lines[self.i]
        f = DiffFile(self.i + 1, line[11:] if line.startswith("diff --git ") else None)
        if f.header is not None:
            self.take()
            while m := _EXTENDED.fullmatch(self.peek() or ""):
                if m[1] in f.ext:
                    raise self.fail(f"repeated '{m[1]}' line")
                self.take()
                f.ext[m[1]] = m[2]
        line = self.peek() or ""
        if line.startswith("--- "):
            self.hunks(f)
        elif line == "GIT binary patch" or line.startswith("Binary files "):
            self.binary(f, line)
        elif line.startswith("@@ -"):
            raise self.fail("hunk without '---'/'+++' lines")
        return f

    def name(self, text: str, git: bool) -> str | None:
        if text == "/dev/null" or text.startswith("/dev/null\t"):
            return None
        quoted = text.startswith('"')
        name, end = _unquote(text) if quoted else (text.partition("\t")[0], len(text.partition("\t")[0]))
        if text[end : end + 1] not in ("", "\t"):
            raise self.fail(f"junk after the quoted name {shown(text)}")
        # In a plain diff git cuts dates off after spaces, reads epoch dates as creation or deletion
        # and, for a bare name, switches to -p0 for the rest of the patch: allow none of that.
        if not git and (
            (" " in name and not quoted) or "/" not in name or re.match(r"\t19(70-01-01|69-12-31)", text[end:])
        ):
            raise self.fail(f"ambiguous name in a plain diff: {shown(text)} (make the patch with git diff)")
        return _strip1(name)

    def hunks(self, f: DiffFile) -> None:
        minus = self.take()
        if not (self.peek() or "").startswith("+++ "):
            raise self.fail("'---' line without a '+++' line")
        plus, git = self.take(), f.header is not None
        f.dashes, f.old, f.new = True, self.name(minus[4:], git), self.name(plus[4:], git)
        if not (self.peek() or "").startswith("@@ -"):
            raise self.fail("no hunk after the '---'/'+++' lines")
        prev_end, closed = 0, ""  # closed: the sides that ended without a newline ("-", "+")
        while (line := self.peek() or "").startswith("@@ -"):
            if not (m := _HUNK.fullmatch(line)) or closed:
                raise self.fail("hunk after a '\\ No newline' marker" if m else f"malformed hunk header {shown(line)}")
            left = {"-": 1 if m[2] is None else int(m[2]), "+": 1 if m[4] is None else int(m[4])}
            if int(m[1]) < prev_end:
                raise self.fail("hunks overlap or are out of order")
            prev_end, before, prev = int(m[1]) + left["-"], f.added + f.removed, ""
            f.body.append(self.take())
            while left["-"] or left["+"] or (self.peek() or "").startswith("\\"):
                if self.i == len(self.lines):
                    raise self.fail("hunk ends early (its header counts more lines)")
                line = self.lines[self.i]
                kind = line[:1] or " "  # an empty line is an empty context line, as git reads it
                if kind == "\\":
                    if len(line) < 11 or line[1] != " " or prev not in ("-", "+", " "):
                        raise self.fail(f"misplaced '\\ No newline' marker {shown(line)}")
                    closed, line = closed + ("-+" if prev == " " else prev), _NO_NEWLINE
                elif kind not in " -+":
                    raise self.fail(f"{shown(line)} is not a hunk line (do the hunk counts add up?)")
                elif closed and (kind == " " or kind in closed):
                    raise self.fail("hunk line after a '\\ No newline at end of file' marker")
                else:
                    for side in "-+" if kind == " " else kind:
                        left[side] -= 1
                    if min(left.values()) < 0:
                        raise self.fail("hunk is longer than its header says")
                    f.added, f.removed = f.added + (kind == "+"), f.removed + (kind == "-")
                    f.gitlink = f.gitlink or bool(_GITLINK.fullmatch(line))
                    line = line or " "
                f.body.append(line)
                prev, self.i = kind, self.i + 1
            if f.added + f.removed == before:
                raise self.fail("hunk changes nothing")

    def binary(self, f: DiffFile, line: str) -> None:
        if not self.allow_binary or line != "GIT binary patch":
            why = "allow_binary is off" if not self.allow_binary else "it carries no data (git cannot apply it)"
            raise rejected(f"binary patch for {shown(f.header or '')}: {why}")
        start = self.i = self.i + 1
        while self.i < len(self.lines) and not starts_file(self.lines, self.i):
            self.i += 1
        data = "\n".join(self.lines[start : self.i]).rstrip("\n")
        if not _BINARY.fullmatch(data + "\n\n"):
            raise rejected(f"line {start + 1}: malformed binary patch data")
        f.binary, f.body = True, [line, *data.split("\n"), ""]
