"""git's own reading of a patch, without touching any working tree.

`reading` asks `git apply --numstat --summary` which files a patch names, with their line counts and
renames; `effect` applies it into a temporary index at HEAD (its new objects in a temporary
directory, so the repository is only read) and asks `git diff-index` what it changes, modes
included. The policy that judges the answers lives in patch.py.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from pimainteno import git
from pimainteno.errors import PatchRejected

_NUMSTAT = re.compile(r"(-|\d+)\t(-|\d+)\t([^\0]*)\0")
_SUMMARY = re.compile(r" (?:(rename|copy) (.*) \(\d+%\)|(?:create|delete|mode change|rewrite) .*)")
_C_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 34: '\\"', 92: "\\\\"}

Entry = tuple[int | None, int | None, str]  # added, removed (None for a binary file), path
Change = tuple[str, str, str, str]  # status (A, D, M or T), old mode, new mode, path


def rejected(reason: str) -> PatchRejected:
    return PatchRejected(f"patch rejected: {reason}")


def shown(text: str) -> str:
    """A name quoted on one line, whatever characters it holds."""
    return repr(text if len(text) <= 120 else text[:117] + "...")


def c_quote(name: str, non_ascii: bool = True) -> str:
    """A name as git writes it in a diff: C-quoted when it holds control characters, '"', '\\' or
    (with core.quotePath, git's default) bytes beyond ASCII."""
    data = name.encode("utf-8", "surrogateescape")
    if not any(b < 32 or b in (34, 92, 127) or (non_ascii and b > 127) for b in data):
        return name
    out = bytearray(b'"')
    for b in data:
        esc = _C_ESCAPES.get(b)
        out += esc.encode() if esc else b"\\%03o" % b if b < 32 or b == 127 or (non_ascii and b > 127) else bytes([b])
    return (out + b'"').decode("utf-8", "surrogateescape")


def git_reason(stderr: str, code: int | None) -> str:
    """git's first useful error line."""
    lines = [ln.strip() for ln in stderr.splitlines()]
    errors = [ln.split(": ", 1)[1] for ln in lines if ln.startswith(("error: ", "fatal: ")) and ": " in ln]
    useful = [e for e in errors if not e.endswith(":")]  # not "while searching for:"
    return (useful or errors or [f"git failed with exit status {code}"])[0][:300]


def ask_git(repo: Path, args: list[str], text: str, why: str, timeout: float, env: dict[str, str] | None = None) -> str:
    try:
        return git.git(repo, *args, input=text, timeout=timeout, env=env)
    except git.GitError as e:
        if e.returncode is None:  # timed out, or no git at all: not the patch's fault
            raise
        raise rejected(f"{why}: {git_reason(e.stderr, e.returncode)}") from None


def reading(repo: Path, text: str, timeout: float) -> tuple[list[Entry], list[str]]:
    """git's reading of the patch: its files in order, and its summary lines."""
    out = ask_git(repo, ["apply", "--numstat", "--summary", "-z", "-"], text, "git cannot read it", timeout)
    entries: list[Entry] = []
    pos = 0
    while m := _NUMSTAT.match(out, pos):
        entries.append((None if m[1] == "-" else int(m[1]), None if m[2] == "-" else int(m[2]), m[3]))
        pos = m.end()
    return entries, out[pos:].split("\n")[:-1]


def moves(summary: list[str], names: set[str]) -> dict[str, tuple[str, str]]:
    """{new path: (rename or copy, old path)} from git's summary lines."""
    found = {}
    for line in summary:
        if not (m := _SUMMARY.fullmatch(line)):
            raise rejected(f"git's summary line {shown(line)} names its files in a way pimainteno cannot read")
        if m[1]:
            old, new = _split_move(m[2], names)
            found[new] = (m[1], old)
    return found


def _split_move(body: str, names: set[str]) -> tuple[str, str]:
    """(old, new) from git's `old => new` or `common/{old => new}`, new being one of names."""
    if body.count(" => ") > 8 or body.count("{") > 8:
        raise rejected(f"cannot read the renamed names in {shown(body)}")
    found = set()
    for k in (k for k in range(len(body)) if body.startswith(" => ", k)):
        found.add((body[:k], body[k + 4 :]))
        for i in (i for i, c in enumerate(body[:k]) if c == "{" and (i == 0 or body[i - 1] == "/")):
            if body.endswith("}"):
                found.add((body[:i] + body[i + 1 : k], body[:i] + body[k + 4 : -1]))
    found = {(old, new) for old, new in found if new in names}
    if len(found) != 1:
        raise rejected(f"cannot tell which file {shown(body)} renames or copies")
    return found.pop()


def _alternate(path: str) -> str:
    """A path for GIT_ALTERNATE_OBJECT_DIRECTORIES, whose entries ':' separates unless C-quoted."""
    return path if not re.search(r'[:"\\]', path) else '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def effect(repo: Path, text: str, timeout: float) -> dict[str, Change]:
    """What applying the patch at HEAD changes in git's index, by path: applied into a temporary
    index whose new objects go to a temporary directory, so the repository is only read."""
    objects = str(git.git_dir(repo, common=True) / "objects")
    tree = git.git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{tree}", check=False, timeout=timeout).strip()
    tree = tree or "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # the empty tree, before a first commit
    with tempfile.TemporaryDirectory(prefix="pimainteno-patch-") as tmp:
        Path(tmp, "objects").mkdir()
        env = {
            "GIT_INDEX_FILE": str(Path(tmp, "index")),
            "GIT_OBJECT_DIRECTORY": str(Path(tmp, "objects")),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": _alternate(objects),
        }
        git.git(repo, "read-tree", tree, env=env, timeout=timeout)
        args = ["apply", "--cached", "--whitespace=nowarn", "-"]
        ask_git(repo, args, text, "it does not apply at HEAD", timeout, env)
        raw = git.git(repo, "diff-index", "--cached", "--raw", "-z", "--no-renames", tree, env=env, timeout=timeout)
    fields = raw.split("\0")
    changes = [
        (m.split()[4], m.split()[0][1:], m.split()[1], path) for m, path in zip(fields[::2], fields[1::2], strict=False)
    ]
    return {c[3]: c for c in changes}
