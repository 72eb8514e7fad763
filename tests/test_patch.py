"""pimainteno.patch: a corpus of hostile and broken patches, real git repositories, and properties.

Every corpus file (tests/patches/*.patch, described in tests/patches/INDEX.md) is checked in a
fresh git repository; the repository must be byte-for-byte unchanged afterwards.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimainteno.config import PatchPolicy
from pimainteno.errors import PatchRejected, ToolError
from pimainteno.patch import (
    ParsedPatch,
    check_patch,
    format_patch,
    git_apply_check,
    glob_match,
    protected_by,
    read_header,
)

CORPUS = Path(__file__).parent / "patches"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_AUTHOR_DATE": "2026-11-24T12:00:00Z",
    "GIT_COMMITTER_DATE": "2026-11-24T12:00:00Z",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}

# The sample repository every corpus patch is written against.
FILES: dict[str, bytes] = {
    "README.md": b"# Demo\n\nA sample project.\n\nRun it with `python -m app`.\n",
    "app/__init__.py": b"",
    "app/main.py": b'def main():\n    print("hello")\n\n\nif __name__ == "__main__":\n    main()\n',
    "app/util.py": b"def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
    "app/version.txt": b"1.0",
    "docs/guide.md": b"# Guide\n\nStep one.\nStep two.\n",
    "docs/my notes.md": b"notes\n",
    "docs/café.txt": "café\n".encode(),
    "old.txt": b"an old file\nto be removed or renamed\n",
    "Makefile": b"all:\n\techo hi\n\techo bye\n",
    "scripts/run.sh": b"#!/bin/sh\necho run\n",
    ".github/workflows/ci.yml": b"on: push\njobs: {}\n",
    ".env": b"SECRET=1\n",
}


def git(repo: Path, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=repo, input=input, capture_output=True, env=env, check=check)


def make_repo(repo: Path) -> Path:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for name, data in FILES.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (repo / "scripts/run.sh").chmod(0o755)
    (repo / "link").symlink_to("README.md")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    git(repo, "status")  # settle the index's stat data now, not during a test
    return repo


def snapshot(repo: Path) -> tuple[bytes, dict[str, str]]:
    """git status plus the kind, mode and content hash of every file, .git included."""
    status = git(repo, "--no-optional-locks", "status", "--porcelain", "-z", "--untracked-files=all").stdout
    seen = {}
    for top, dirs, files in os.walk(repo):
        for name in dirs + files:
            path = Path(top, name)
            st = path.lstat()
            if path.is_symlink():
                seen[str(path)] = f"link {os.readlink(path)}"
            elif path.is_dir():
                seen[str(path)] = f"dir {st.st_mode:o}"
            else:
                seen[str(path)] = f"{st.st_mode:o} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    return status, seen


def read(name: str) -> str:
    return (CORPUS / name).read_bytes().decode("utf-8", "surrogateescape")


def symlinked_dir(repo: Path, tmp: Path) -> None:
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "a.txt").write_text("outside\n")
    (repo / "linked").symlink_to(outside)


@dataclass
class Case:
    file: str
    expect: str | None = None  # a fragment of the reason; None: the patch is valid
    stage: str = "policy"  # policy: check_patch rejects; git: check_patch passes, git apply --check fails
    policy: dict[str, Any] = field(default_factory=dict)
    setup: Callable[[Path, Path], None] | None = None

    def __str__(self) -> str:
        return self.file + ("" if not self.policy else "+" + ",".join(self.policy))


CASES = [
    # broken or empty
    Case("empty.patch", "the patch is empty"),
    Case("blank_lines.patch", "the patch is empty"),
    Case("prose.patch", "not a unified diff"),
    Case("nul_byte.patch", "contains a NUL byte"),
    Case("crlf.patch", "CRLF line ending"),
    Case("hunk_short.patch", "hunk ends early"),
    Case("hunk_long.patch", "unexpected line '+import os'"),
    Case("garbage_between_files.patch", "unexpected line"),
    Case("orphan_hunk.patch", "outside any file diff"),
    Case("whitespace_damaged.patch", "is not a hunk line"),
    Case("tabs_damaged.patch", "patch failed: Makefile:1", stage="git"),
    Case("wrong_base.patch", "patch failed: app/util.py:1", stage="git"),
    Case("no_newline_middle.patch", "No newline"),
    Case("no_newline_then_hunk.patch", "No newline"),
    Case("no_newline_misplaced.patch", "No newline"),
    Case("inconsistent_names.patch", "name different files"),
    Case("header_mismatch.patch", "does not match the file names"),
    Case("dev_null_no_mode.patch", "'/dev/null' must go with"),
    Case("ext_after_dashes.patch", "no hunk after the '---'/'+++' lines"),
    Case("repeated_header_line.patch", "repeated 'new mode' line"),
    Case("combined_diff.patch", "outside any file diff"),
    Case("plain_epoch.patch", "ambiguous name in a plain diff"),
    Case("plain_bare_then_workflow.patch", "ambiguous name in a plain diff"),
    Case("duplicate_file.patch", "appears in more than one file diff"),
    Case("other_project.patch", "for project 'other', not 'app'"),
    Case("two_headers.patch", "more than one '# pimainteno' header"),
    Case("bad_header.patch", "malformed header line"),
    # paths
    Case("abs_etc_passwd.patch", "'/etc/passwd' is absolute"),
    Case("plain_abs.patch", "'/etc/passwd' is absolute"),
    Case("dotdot.patch", "'../../x' leaves the repository"),
    Case("dotdot_inner.patch", "leaves the repository"),
    Case("git_config.patch", "inside git's own directory"),
    Case("git_upper_hooks.patch", "'.GIT/hooks/pre-commit' is inside git's own directory"),
    Case("sub_git_config.patch", "'sub/.git/config' is inside git's own directory"),
    Case("git_file_in_subdir.patch", "'vendor/.git' is inside git's own directory"),
    Case("git_ntfs_trailing_dot.patch", "inside git's own directory"),
    Case("git_hfs_invisible.patch", "control or invisible character"),
    Case("git_short_name.patch", "inside git's own directory"),
    Case("quoted_dotgit.patch", "'.git/config' is inside git's own directory"),
    Case("quoted_newline.patch", "control or invisible character"),
    Case("bidi_name.patch", "control or invisible character"),
    Case("rename_into_hooks.patch", "'.git/hooks/post-merge' is inside git's own directory"),
    Case("rename_out_of_repo.patch", "leaves the repository"),
    Case("copy_from_git_config.patch", "'.git/config' is inside git's own directory"),
    Case("through_symlink_dir.patch", "goes through the symlink 'linked'", setup=symlinked_dir),
    Case("modify_symlink_as_file.patch", "'link' is a symlink in the repository"),
    # modes
    Case("new_symlink.patch", "symlink (mode 120000)"),
    Case("delete_symlink.patch", "'link' is a symlink"),
    Case("gitlink.patch", "submodule"),
    Case("subproject_lines.patch", "submodule"),
    Case("setuid.patch", "unusual mode 104755"),
    Case("exec_new_file.patch", "would become executable"),
    Case("exec_chmod.patch", "would become executable"),
    Case("exec_chmod.patch", policy={"allow_exec": True}),
    Case("git_binary.patch", "binary patch for 'a/logo.bin b/logo.bin': allow_binary is off"),
    Case("git_binary.patch", policy={"allow_binary": True}),
    Case("binary_files_differ.patch", "binary patch"),
    Case("binary_files_differ.patch", "carries no data", policy={"allow_binary": True}),
    # protected files and policy switches
    Case("protected_workflow.patch", "'.github/workflows/ci.yml' is protected"),
    Case("protected_pem.patch", "'deploy/key.pem' is protected (matches '**/*.pem')"),
    Case("protected_env.patch", "'.env' is protected"),
    Case("valid_add.patch", "allow_new_files is off", policy={"allow_new_files": False}),
    Case("valid_delete.patch", "allow_delete is off", policy={"allow_delete": False}),
    Case("valid_rename.patch", "allow_delete is off", policy={"allow_delete": False}),
    Case("valid_modify.patch", "touches 2 files, more than max_files=1", policy={"max_files": 1}),
    Case("valid_modify.patch", "changes 4 lines, more than max_lines=3", policy={"max_lines": 3}),
    # valid patches
    Case("valid_modify.patch"),
    Case("valid_add.patch"),
    Case("valid_delete.patch"),
    Case("valid_rename.patch"),
    Case("valid_pure_rename.patch"),
    Case("valid_header.patch"),
    Case("valid_plain.patch"),
    Case("valid_exec_kept.patch"),
    Case("valid_quoted_names.patch"),
    Case("valid_no_newline.patch"),
    Case("valid_format_patch.patch"),
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def numstat_paths(repo: Path, text: str) -> set[str] | None:
    """The paths git itself reads in a patch (new names, old ones for deletions); None if it refuses."""
    proc = git(repo, "apply", "--numstat", "-z", "-", input=text.encode("utf-8", "surrogateescape"), check=False)
    if proc.returncode:
        return None
    return {os.fsdecode(x.split(b"\t")[2]) for x in proc.stdout.split(b"\0") if x.count(b"\t") == 2}


def applied(repo: Path, tmp: Path, text: str, name: str) -> dict[str, str]:
    """The work tree after really applying text to a copy of repo."""
    copy = tmp / name
    shutil.copytree(repo, copy, symlinks=True)
    git(copy, "update-index", "-q", "--refresh")  # a copy has new inodes: let git re-stat the files
    git(copy, "apply", "--index", "-", input=text.encode("utf-8", "surrogateescape"))
    return {k.replace(str(copy), ""): v for k, v in snapshot(copy)[1].items() if "/.git" not in k}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_corpus(case: Case, repo: Path, tmp_path: Path) -> None:
    if case.setup:
        case.setup(repo, tmp_path)
    text, policy = read(case.file), replace(PatchPolicy(), **case.policy)
    before = snapshot(repo)
    if case.stage == "policy" and case.expect:
        with pytest.raises(PatchRejected) as caught:
            check_patch(text, repo, policy, project="app")
        reason = str(caught.value)
        assert reason.startswith("patch rejected: ") and "\n" not in reason and "\r" not in reason
        assert case.expect in reason
    else:
        parsed = check_patch(text, repo, policy, project="app")
        problem = git_apply_check(repo, parsed.text)
        if case.stage == "git":
            assert problem is not None and case.expect is not None and case.expect in problem
        else:
            assert problem is None, problem
            assert git_apply_check(repo, text) is None
            assert numstat_paths(repo, parsed.text) == numstat_paths(repo, text) == {f.path for f in parsed.files}
            assert applied(repo, tmp_path, parsed.text, "canonical") == applied(repo, tmp_path, text, "original")
    assert snapshot(repo) == before


def test_corpus_is_indexed() -> None:
    files = {p.name for p in CORPUS.glob("*.patch")}
    index = (CORPUS / "INDEX.md").read_text()
    assert files == {c.file for c in CASES}
    assert [f for f in sorted(files) if f"`{f}`" not in index] == []
    assert len([f for f in files if not f.startswith("valid_")]) >= 30


def test_valid_patches_parse(repo: Path) -> None:
    parsed = check_patch(read("valid_rename.patch"), repo, PatchPolicy())
    assert [(f.old_path, f.path, f.status) for f in parsed.files] == [("old.txt", "docs/old.txt", "renamed")]
    assert parsed.paths == ["old.txt", "docs/old.txt"]
    parsed = check_patch(read("valid_quoted_names.patch"), repo, PatchPolicy())
    assert parsed.paths == ["docs/café.txt", "docs/my notes.md"]
    assert '"a/docs/caf\\303\\251.txt"' in parsed.text
    parsed = check_patch(read("valid_header.patch"), repo, PatchPolicy())
    assert (parsed.project, parsed.proposal_id) == ("app", 7)
    assert not parsed.text.startswith("#")
    parsed = check_patch(read("valid_add.patch"), repo, PatchPolicy())
    assert [(f.path, f.old_path, f.status, f.new_mode, f.added) for f in parsed.files] == [
        ("app/new.py", None, "added", "100644", 2)
    ]
    parsed = check_patch(read("valid_modify.patch"), repo, PatchPolicy())
    assert (parsed.added, parsed.removed, len(parsed.files)) == (2, 2, 2)


def big_patch(files: int, lines: int) -> str:
    out = []
    for n in range(files):
        body = "".join(f"+line {i}\n" for i in range(lines))
        out.append(f"diff --git a/gen/f{n}.txt b/gen/f{n}.txt\nnew file mode 100644\n--- /dev/null\n")
        out.append(f"+++ b/gen/f{n}.txt\n@@ -0,0 +1,{lines} @@\n{body}")
    return "".join(out)


def test_huge_patches(repo: Path) -> None:
    before = snapshot(repo)
    with pytest.raises(PatchRejected, match=r"changes 5000 lines, more than max_lines=1000"):
        check_patch(big_patch(1, 5000), repo, PatchPolicy())
    with pytest.raises(PatchRejected, match=r"touches 21 files, more than max_files=20"):
        check_patch(big_patch(21, 1), repo, PatchPolicy())
    assert len(check_patch(big_patch(20, 50), repo, PatchPolicy()).files) == 20
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/*.pem", "a.pem", True),
        ("**/*.pem", "x/y/a.pem", True),
        ("**/*.pem", "a.pem.txt", False),
        (".github/workflows/**", ".github/workflows/ci.yml", True),
        (".github/workflows/**", ".github/workflows/sub/x.yml", True),
        (".github/workflows/**", ".github/ci.yml", False),
        (".github/workflows/**", "x/.github/workflows/ci.yml", False),
        (".env", ".env", True),
        (".env", "sub/.env", True),
        (".env", ".envrc", False),
        (".env.*", ".env.local", True),
        ("*.key", "deep/dir/server.key", True),
        ("**/id_rsa*", "home/.ssh/id_rsa.pub", True),
        ("deploy/", "deploy/key.txt", True),
        ("deploy/*.yml", "deploy/a.yml", True),
        ("deploy/*.yml", "deploy/sub/a.yml", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/x/y/c", False),
        ("PiMainteno.toml", "PiMainteno.toml", True),
        ("PiMainteno.toml", "pimainteno.toml", False),
    ],
)
def test_glob_match(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


def test_protected_by_directories() -> None:
    assert protected_by(".git/hooks/x", (".git/**",)) == ".git/**"
    assert protected_by("secrets/a/b.txt", ("secrets",)) == "secrets"
    assert protected_by("app/secrets.py", ("secrets",)) is None
    assert protected_by("README.md", PatchPolicy().protected) is None


def test_header_round_trip(repo: Path) -> None:
    diff = read("valid_modify.patch")
    text = format_patch(diff, "app", 12, subject="Fix the\nREADME\x1b[31m")
    assert text.splitlines()[:2] == ["# pimainteno project=app proposal=12", "# subject: Fix the README [31m"]
    assert read_header(text) == ("app", 12)
    assert read_header(format_patch(diff, "my-app.2", None)) == ("my-app.2", None)
    assert read_header(diff) == (None, None)
    assert format_patch(text, "other", 3).count("# pimainteno") == 1  # replaced, never stacked
    assert format_patch("", "app", 1) == "" and format_patch("\n", "app", 1) == ""
    assert git_apply_check(repo, text) is None  # git apply skips the header
    assert check_patch(text, repo, PatchPolicy(), project="app").text == check_patch(diff, repo, PatchPolicy()).text
    with pytest.raises(PatchRejected, match="for project 'app', not 'web'"):
        check_patch(text, repo, PatchPolicy(), project="web")
    for bad in ("", "-app", "a b", "x" * 65, "../x"):
        with pytest.raises(ValueError):
            format_patch(diff, bad, 1)
    with pytest.raises(ValueError):
        format_patch(diff, "app", -1)


@pytest.mark.parametrize(
    "line",
    ["# pimainteno project=../x", "# pimainteno project=app proposal=x", "# pimainteno proposal=3", "# pimainteno "],
)
def test_malformed_header(line: str) -> None:
    with pytest.raises(PatchRejected, match="malformed header line"):
        read_header(line + "\n" + read("valid_modify.patch"))


def test_git_apply_check_reports_one_line(repo: Path) -> None:
    problem = git_apply_check(repo, read("wrong_base.patch"))
    assert problem == "patch failed: app/util.py:1"
    assert git_apply_check(repo, "garbage\n") is not None


def test_git_missing_is_a_tool_error(repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError, match="git is not installed"):
        git_apply_check(repo, read("valid_modify.patch"))


def test_ambiguous_headers_cost_little(repo: Path) -> None:
    name = " ".join(["x/"] * 1300)
    text = f"diff --git a/{name} b/{name}"[:8000] + "\nnew file mode 100644\n"
    started = time.monotonic()
    with pytest.raises(PatchRejected, match="too ambiguous"):
        check_patch(text * 1000, repo, PatchPolicy(max_files=1000))
    assert time.monotonic() - started < 5


# --- properties -------------------------------------------------------------------------------


@functools.cache
def valid_texts() -> list[str]:
    return [read(c.file) for c in CASES if c.expect is None and not c.policy]


LINES = [
    "", " ", "+evil", "-x", "\\ No newline at end of file", "@@ -1 +1 @@", "@@ -0,0 +1,2 @@",
    "--- a/.git/config", "+++ b/.git/config", "diff --git a/x b/x", "diff --git a/.git/config b/.git/config",
    "rename from README.md", "rename to .git/hooks/pre-commit", "copy from .git/config", "copy to x",
    "new file mode 120000", "new file mode 100755", "old mode 100644", "new mode 100755", "deleted file mode 100644",
    "index 0000000..1111111 160000", "GIT binary patch", "literal 5", "Binary files a/x and b/x differ",
    "--- /dev/null", "+++ /dev/null", "similarity index 100%", "# pimainteno project=other", "-- ",
    "--- README.md", "+++ README.md", "--- a/README.md 2020-01-01 00:00:00", '--- "a/\\056git/config"',
    "+Subproject commit 0123456789abcdef0123456789abcdef01234567",
]  # fmt: skip
CHARS = ["\x00", "\r", "\t", " ", "/", ".", '"', "\\", "\u202e", "\u200c", "é", "a", "+", "-", "@", "\n", "0"]


@st.composite
def mutants(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(valid_texts())).split("\n")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "char", "truncate", "replace"]))
        k = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == "delete" and lines:
            del lines[k]
        elif op == "duplicate" and lines:
            lines.insert(k, lines[k])
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
        elif op in ("insert", "replace"):
            new = draw(st.sampled_from(LINES) | st.text(max_size=30))
            lines[k : k + (op == "replace")] = [new]
        elif op == "char" and lines:
            pos = draw(st.integers(0, len(lines[k])))
            lines[k] = lines[k][:pos] + draw(st.sampled_from(CHARS)) + lines[k][pos + draw(st.integers(0, 1)) :]
        elif op == "truncate":
            lines = lines[:k]
    return "\n".join(lines)


POLICIES = st.sampled_from([PatchPolicy(), PatchPolicy(allow_binary=True, allow_exec=True, protected=())])


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("prop") / "repo")


def only_rejects(text: str, repo: Path, policy: PatchPolicy) -> ParsedPatch | None:
    """check_patch either rejects in one line, or accepts a patch git reads exactly as it did."""
    try:
        parsed = check_patch(text, repo, policy)
    except PatchRejected as e:
        assert str(e).startswith("patch rejected: ") and "\n" not in str(e)
        return None
    for path in parsed.paths:
        parts = path.split("/")
        assert not path.startswith("/") and ".." not in parts
        assert ".git" not in {p.casefold().rstrip(". ") for p in parts}
        assert protected_by(path, policy.protected) is None
    problem = git_apply_check(repo, parsed.text)
    assert problem is None or "\n" not in problem
    names = {f.path for f in parsed.files}
    seen = numstat_paths(repo, parsed.text)
    assert seen is None or seen == names
    raw = numstat_paths(repo, text)  # callers that apply the original text must see the same files
    assert raw is None or raw == names
    return parsed


settings.register_profile("patch", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(settings.get_profile("patch"), max_examples=200)
@given(text=st.text(), policy=POLICIES)
def test_random_text_is_only_rejected(shared_repo: Path, text: str, policy: PatchPolicy) -> None:
    before = snapshot(shared_repo)
    only_rejects(text, shared_repo, policy)
    assert snapshot(shared_repo) == before


@settings(settings.get_profile("patch"), max_examples=150)
@given(data=st.binary(), policy=POLICIES)
def test_random_bytes_are_only_rejected(shared_repo: Path, data: bytes, policy: PatchPolicy) -> None:
    before = snapshot(shared_repo)
    only_rejects(data.decode("utf-8", "surrogateescape"), shared_repo, policy)
    assert snapshot(shared_repo) == before


@settings(settings.get_profile("patch"), max_examples=500)
@given(text=mutants(), policy=POLICIES)
def test_mutated_patches_never_slip_through(shared_repo: Path, text: str, policy: PatchPolicy) -> None:
    before = snapshot(shared_repo)
    only_rejects(text, shared_repo, policy)
    assert snapshot(shared_repo) == before
