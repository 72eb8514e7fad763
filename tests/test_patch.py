"""pimainteno.patch: a corpus of hostile and broken patches, real git repositories, and properties.

Every corpus file (tests/patches/*.patch, described in tests/patches/INDEX.md) is checked in a
fresh git repository; the repository must be byte-for-byte unchanged afterwards, and a patch that
passes is returned unchanged. Hypothesis fuzzers run a small profile by default and the full one
under the `slow` marker. read_patch is tested with real files, /dev/zero and real processes
reading stdin.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimainteno.config import PatchPolicy
from pimainteno.errors import InputError, PatchRejected, ToolError
from pimainteno.patch import (
    MAX_PATCH_BYTES,
    ParsedPatch,
    check_patch,
    format_patch,
    git_apply_check,
    glob_match,
    protected_by,
    read_header,
    read_patch,
)
from tests.conftest import PROFILES, fuzz

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
    "docs/windows.txt": b"one\r\ntwo\r\nthree\r\n",
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


ALLOW_ALL = {"allow_exec": True, "allow_binary": True, "protected": ()}


def symlinked_dir(repo: Path, tmp: Path) -> None:
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "a.txt").write_text("outside\n")
    (repo / "linked").symlink_to(outside)


@dataclass
class Case:
    file: str
    expect: str | None = None  # a fragment of the reason; None: the patch is valid
    policy: dict[str, Any] = field(default_factory=dict)
    setup: Callable[[Path, Path], None] | None = None

    def __str__(self) -> str:
        return self.file + ("" if not self.policy else "+" + ",".join(self.policy))


CASES = [
    # broken or empty: the checks git cannot make, then git's own refusals
    Case("empty.patch", "the patch is empty"),
    Case("blank_lines.patch", "the patch is empty"),
    Case("prose.patch", "git cannot read it: No valid patches in input"),
    Case("nul_byte.patch", "line 21 contains a NUL byte"),
    Case("crlf.patch", "line 1: CRLF line ending"),
    Case("hunk_short.patch", "git cannot read it: corrupt patch at line 10"),
    Case("hunk_long.patch", "line 11: git skips '+import os', which belongs to no hunk"),
    Case("garbage_between_files.patch", "line 12: git skips 'Some words a tool might ignore'"),
    Case("orphan_hunk.patch", "git cannot read it: patch fragment without header"),
    Case("whitespace_damaged.patch", "git cannot read it: corrupt patch at line 6"),
    Case("tabs_damaged.patch", "it does not apply at HEAD: patch failed: Makefile:1"),
    Case("wrong_base.patch", "it does not apply at HEAD: patch failed: app/util.py:1"),
    Case("no_newline_middle.patch", "it does not apply at HEAD: patch failed: README.md:1"),
    Case("no_newline_then_hunk.patch", "it does not apply at HEAD: patch failed: app/version.txt:3"),
    Case("no_newline_misplaced.patch", "it does not apply at HEAD: patch failed: README.md:1"),
    Case("inconsistent_names.patch", "'.git/config' is inside git's own directory"),
    Case("header_mismatch.patch", "'diff --git a/docs/guide.md b/docs/guide.md' does not name the file git reads"),
    Case("dev_null_no_mode.patch", "it does not apply at HEAD: dev/null: does not exist in index"),
    Case("ext_after_dashes.patch", "it does not apply at HEAD: patch failed: app/main.py:1"),
    Case("repeated_header_line.patch", "'app/main.py' would become executable"),
    Case("combined_diff.patch", "git cannot read it: No valid patches in input"),
    Case("plain_epoch.patch", "it does not apply at HEAD: README.md: already exists in index"),
    Case("plain_bare_then_workflow.patch", "'.github/workflows/ci.yml' is protected"),
    Case("duplicate_file.patch", "'README.md' appears in more than one file diff"),
    Case("other_project.patch", "for project 'other', not 'app'"),
    Case("two_headers.patch", "more than one '# pimainteno' header"),
    Case("bad_header.patch", "malformed header line"),
    # paths
    Case("abs_etc_passwd.patch", "'/etc/passwd' is absolute"),
    Case("plain_abs.patch", "it does not apply at HEAD: etc/passwd: does not exist in index"),
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
    # modes, as git will apply them
    Case("new_symlink.patch", "'evil' is a symlink (mode 120000)"),
    Case("new_symlink.patch", "'evil' is a symlink (mode 120000)", policy=ALLOW_ALL),
    Case("delete_symlink.patch", "'link' is a symlink"),
    Case("gitlink.patch", "'vendor/lib' is a submodule (mode 160000)"),
    Case("gitlink.patch", "'vendor/lib' is a submodule (mode 160000)", policy=ALLOW_ALL),
    Case("subproject_lines.patch", "it does not apply at HEAD: vendor/lib: does not exist in index"),
    Case("setuid.patch", "'app/tool' would become executable (mode 100755)"),  # git drops the setuid bit
    Case("setuid.patch", policy={"allow_exec": True}),
    Case("exec_new_file.patch", "would become executable"),
    Case("exec_chmod.patch", "would become executable"),
    Case("exec_chmod.patch", policy={"allow_exec": True}),
    Case("git_binary.patch", "binary patch for 'logo.bin': allow_binary is off"),
    Case("git_binary.patch", policy={"allow_binary": True}),
    Case("binary_files_differ.patch", "binary patch for 'logo.bin'"),
    Case("binary_files_differ.patch", "cannot apply binary patch to 'logo.bin' without full index line", policy={"allow_binary": True}),
    # protected files, in any case and Unicode spelling, and policy switches
    Case("protected_workflow.patch", "'.github/workflows/ci.yml' is protected"),
    Case("protected_pem.patch", "'deploy/key.pem' is protected (matches '**/*.pem')"),
    Case("protected_env.patch", "'.env' is protected"),
    Case("protected_pem_upper.patch", "'certs/KEY.PEM' is protected (matches '**/*.pem')"),
    Case("protected_toml_upper.patch", "'PIMAINTENO.TOML' is protected (matches 'PiMainteno.toml')"),
    Case("protected_toml_lower.patch", "'pimainteno.toml' is protected (matches 'PiMainteno.toml')"),
    Case("protected_env_upper.patch", "'.ENV' is protected (matches '.env')"),
    Case("protected_workflow_case.patch", "'.GitHub/Workflows/deploy.yml' is protected"),
    Case("protected_kelvin.patch", "'deploy/server.\u212aEY' is protected (matches '**/*.key')"),
    Case("protected_long_s.patch", "'.gitmodule\u017f' is protected (matches '.gitmodules')"),
    Case("protected_nfd.patch", "is protected (matches 'docs/café.txt')", policy={"protected": ("docs/café.txt",)}),
    Case("protected_nfd.patch"),
    Case("valid_add.patch", "allow_new_files is off", policy={"allow_new_files": False}),
    Case("valid_delete.patch", "'old.txt' would be removed (deleted) and allow_delete is off", policy={"allow_delete": False}),
    Case("valid_rename.patch", "'old.txt' would be removed (renamed) and allow_delete is off", policy={"allow_delete": False}),
    Case("valid_rename.patch", "'docs/old.txt' would be a new file (renamed)", policy={"allow_new_files": False}),
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
    Case("valid_crlf_file.patch"),
]  # fmt: skip


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("template") / "repo")


@pytest.fixture
def repo(tmp_path: Path, template_repo: Path) -> Path:
    """A fresh copy of the sample repository (copying is much cheaper than making it again)."""
    shutil.copytree(template_repo, tmp_path / "repo", symlinks=True)
    git(tmp_path / "repo", "update-index", "-q", "--refresh")  # new inodes: settle the index now
    return tmp_path / "repo"


def numstat_paths(repo: Path, text: str) -> set[str] | None:
    """The paths git itself reads in a patch (new names, old ones for deletions); None if it refuses."""
    proc = git(repo, "apply", "--numstat", "-z", "-", input=text.encode("utf-8", "surrogateescape"), check=False)
    if proc.returncode:
        return None
    return {os.fsdecode(x.split(b"\t")[2]) for x in proc.stdout.split(b"\0") if x.count(b"\t") == 2}


def applied_paths(repo: Path, tmp: Path, text: str) -> set[str]:
    """The paths git status shows after really applying text to a copy of repo."""
    copy = tmp / "applied"
    shutil.copytree(repo, copy, symlinks=True)
    git(copy, "update-index", "-q", "--refresh")  # a copy has new inodes: let git re-stat the files
    git(copy, "apply", "--index", "-", input=text.encode("utf-8", "surrogateescape"))
    out = git(copy, "-c", "core.quotePath=false", "status", "--porcelain", "-z", "--no-renames").stdout
    return {os.fsdecode(entry[3:]) for entry in out.split(b"\0") if entry}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_corpus(case: Case, repo: Path, tmp_path: Path) -> None:
    if case.setup:
        case.setup(repo, tmp_path)
    text, policy = read(case.file), replace(PatchPolicy(), **case.policy)
    before = snapshot(repo)
    if case.expect:
        with pytest.raises(PatchRejected) as caught:
            check_patch(text, repo, policy, project="app")
        reason = str(caught.value)
        assert reason.startswith("patch rejected: ") and "\n" not in reason and "\r" not in reason
        assert case.expect in reason
    else:
        parsed = check_patch(text, repo, policy, project="app")
        assert parsed.text == text  # what was checked is what gets applied, byte for byte
        assert git_apply_check(repo, parsed.text) is None
        assert numstat_paths(repo, text) == {f.path for f in parsed.files}
        assert applied_paths(repo, tmp_path, parsed.text) == set(parsed.paths)
    assert snapshot(repo) == before


def test_corpus_is_indexed() -> None:
    files = {p.name for p in CORPUS.glob("*.patch")}
    index = (CORPUS / "INDEX.md").read_text()
    assert files == {c.file for c in CASES}
    assert [f for f in sorted(files) if f"`{f}`" not in index] == []
    assert len([f for f in files if not f.startswith("valid_")]) >= 30


def test_corpus_is_quick(tmp_path: Path) -> None:
    """The whole corpus, checked in one repository, stays well under a few seconds."""
    repo = make_repo(tmp_path / "repo")
    started = time.monotonic()
    for case in (c for c in CASES if not c.setup):
        with contextlib.suppress(PatchRejected):
            check_patch(read(case.file), repo, replace(PatchPolicy(), **case.policy), project="app")
    assert time.monotonic() - started < 15


def test_git_reading(repo: Path) -> None:
    parsed = check_patch(read("valid_rename.patch"), repo, PatchPolicy())
    assert [(f.old_path, f.path, f.status, f.added, f.removed) for f in parsed.files] == [
        ("old.txt", "docs/old.txt", "renamed", 1, 0)
    ]
    assert parsed.paths == ["old.txt", "docs/old.txt"]
    parsed = check_patch(read("valid_pure_rename.patch"), repo, PatchPolicy())
    assert [(f.old_path, f.path, f.status) for f in parsed.files] == [("docs/guide.md", "docs/manual.md", "renamed")]
    parsed = check_patch(read("valid_quoted_names.patch"), repo, PatchPolicy())
    assert parsed.paths == ["docs/café.txt", "docs/my notes.md"]
    parsed = check_patch(read("valid_header.patch"), repo, PatchPolicy())
    assert (parsed.project, parsed.proposal_id) == ("app", 7)
    assert parsed.text == read("valid_header.patch")
    parsed = check_patch(read("valid_add.patch"), repo, PatchPolicy())
    assert [(f.path, f.old_path, f.status, f.old_mode, f.new_mode, f.added) for f in parsed.files] == [
        ("app/new.py", None, "added", None, "100644", 2)
    ]
    parsed = check_patch(read("exec_chmod.patch"), repo, PatchPolicy(allow_exec=True))
    assert [(f.status, f.old_mode, f.new_mode) for f in parsed.files] == [("modified", "100644", "100755")]
    parsed = check_patch(read("git_binary.patch"), repo, PatchPolicy(allow_binary=True))
    assert [(f.path, f.is_binary, f.status) for f in parsed.files] == [("logo.bin", True, "added")]
    parsed = check_patch(read("valid_modify.patch"), repo, PatchPolicy())
    assert (parsed.added, parsed.removed, len(parsed.files)) == (2, 2, 2)


def test_copy_from_a_protected_file(repo: Path) -> None:
    """A copy only reads its source, but a secret copied out of a protected file is a leak."""
    copy = "diff --git a/.env b/leak.txt\nsimilarity index 100%\ncopy from .env\ncopy to leak.txt\n"
    with pytest.raises(PatchRejected, match=r"path '.env' is protected"):
        check_patch(copy, repo, PatchPolicy())
    parsed = check_patch(copy.replace(".env", "old.txt"), repo, PatchPolicy())
    assert [(f.old_path, f.path, f.status) for f in parsed.files] == [("old.txt", "leak.txt", "copied")]


def test_renamed_files_keep_their_mode(repo: Path) -> None:
    """git's index sees a rename as a deletion and an addition; the mode is judged against the source."""
    rename = "diff --git a/scripts/run.sh b/scripts/go.sh\nsimilarity index 100%\nrename from scripts/run.sh\nrename to scripts/go.sh\n"
    parsed = check_patch(rename, repo, PatchPolicy())
    assert [(f.old_path, f.path, f.status, f.old_mode, f.new_mode) for f in parsed.files] == [
        ("scripts/run.sh", "scripts/go.sh", "renamed", "100755", "100755")
    ]
    chmod = "diff --git a/old.txt b/run.sh\nold mode 100644\nnew mode 100755\nsimilarity index 100%\nrename from old.txt\nrename to run.sh\n"
    with pytest.raises(PatchRejected, match=r"'run.sh' would become executable \(mode 100755\)"):
        check_patch(chmod, repo, PatchPolicy())


def test_content_that_looks_like_patch_syntax(repo: Path) -> None:
    """Inside a hunk every line is content, as git counts it: `--- x` and `+++ y` lines are a removed
    `-- x` and an added `++ y`, not a file header."""
    (repo / "notes.md").write_text("-- removed\n++ kept\ntext\n")
    git(repo, "add", "notes.md")
    git(repo, "commit", "-q", "-m", "notes")
    (repo / "notes.md").write_text("++ added\n-- kept\ndiff --git a/x b/x\n@@ -1 +1 @@\ntext\n-- \n")
    diff = git(repo, "diff").stdout.decode()
    git(repo, "checkout", "--", "notes.md")
    assert "\n--- removed\n" in diff and "\n+++ added\n" in diff and "\n+-- \n" in diff
    parsed = check_patch(diff, repo, PatchPolicy())
    assert [(f.path, f.added, f.removed) for f in parsed.files] == [("notes.md", 5, 2)]


def test_mnemonic_prefixes(repo: Path) -> None:
    """A user's diff.mnemonicPrefix writes c/ and i/ (or i/ and w/) instead of a/ and b/: git reads
    the same files, and so does the check."""
    (repo / "README.md").write_text("changed\n")
    git(repo, "add", "README.md")
    diff = git(repo, "-c", "diff.mnemonicPrefix=true", "diff", "--cached", "HEAD").stdout.decode()
    git(repo, "reset", "-q", "--hard")
    assert diff.startswith("diff --git c/README.md i/README.md\n")
    assert [f.path for f in check_patch(diff, repo, PatchPolicy()).files] == ["README.md"]
    with pytest.raises(PatchRejected, match="does not name the file git reads"):
        check_patch(diff.replace("diff --git c/README.md i/README.md", "diff --git c/a.md i/a.md"), repo, PatchPolicy())


def test_first_commit(tmp_path: Path) -> None:
    """Before any commit git reads the patch against the empty tree."""
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    parsed = check_patch(read("valid_add.patch"), repo, PatchPolicy())
    assert [f.path for f in parsed.files] == ["app/new.py"]
    with pytest.raises(PatchRejected, match="does not apply at HEAD: README.md: does not exist in index"):
        check_patch(read("valid_plain.patch"), repo, PatchPolicy())


def test_repository_path_with_a_colon(tmp_path: Path) -> None:
    """The objects directory is passed to git as an alternate, where ':' separates entries."""
    repo = make_repo(tmp_path / "a:b" / "repo")
    assert len(check_patch(read("valid_modify.patch"), repo, PatchPolicy()).files) == 2


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
        ("PiMainteno.toml", "pimainteno.toml", True),  # case-insensitive file systems
        ("PiMainteno.toml", "PIMAINTENO.TOML", True),
        ("**/*.pem", "certs/KEY.PEM", True),
        (".git/**", ".GIT/config", True),
        (".env", ".ENV", True),
        (".gitmodules", ".gitmodule\u017f", True),  # long s casefolds to s
        ("**/*.key", "deploy/server.\u212aEY", True),  # Kelvin sign casefolds to k
        ("docs/café.txt", "docs/cafe\u0301.txt", True),  # NFD spelling of an NFC pattern
        ("docs/cafe\u0301.txt", "DOCS/CAFÉ.TXT", True),
        ("**/*.pem", "a.pe", False),
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
    assert check_patch(text, repo, PatchPolicy(), project="app").text == text
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


def test_git_that_does_not_answer_is_a_tool_error(repo: Path) -> None:
    """A git that hangs (here reading its alternates from a FIFO nobody writes) is a tool failure
    (exit 4) after the timeout, never the patch's fault (a rejection)."""
    os.mkfifo(repo / ".git/objects/info/alternates")
    started = time.monotonic()
    with pytest.raises(ToolError, match="timed out after 1s") as caught:
        check_patch(read("valid_modify.patch"), repo, PatchPolicy(), timeout=1)
    assert not isinstance(caught.value, PatchRejected)
    assert time.monotonic() - started < 10


def test_many_files_cost_little(repo: Path) -> None:
    name = " ".join(["x/"] * 1300)
    text = f"diff --git a/{name} b/{name}"[:8000] + "\nnew file mode 100644\n"
    started = time.monotonic()
    with pytest.raises(PatchRejected, match="appears in more than one file diff"):
        check_patch(text * 1000, repo, PatchPolicy(max_files=1000))
    with pytest.raises(PatchRejected, match="touches 1000 files, more than max_files=20"):
        check_patch(text * 1000, repo, PatchPolicy())
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
    assert parsed.text == text
    for f in parsed.files:
        assert not {"120000", "160000"} & {f.old_mode, f.new_mode}
        assert policy.allow_exec or f.new_mode != "100755" or f.old_mode == "100755"
    assert git_apply_check(repo, parsed.text) is None  # it applied at HEAD in a temporary index
    assert numstat_paths(repo, text) == {f.path for f in parsed.files}
    return parsed


@pytest.mark.parametrize("profile", PROFILES)
def test_random_text_is_only_rejected(shared_repo: Path, profile: str) -> None:
    @fuzz(profile, full=300)
    @given(text=st.text(), policy=POLICIES)
    def check(text: str, policy: PatchPolicy) -> None:
        only_rejects(text, shared_repo, policy)

    before = snapshot(shared_repo)
    check()
    assert snapshot(shared_repo) == before


@pytest.mark.parametrize("profile", PROFILES)
def test_random_bytes_are_only_rejected(shared_repo: Path, profile: str) -> None:
    @fuzz(profile, full=200)
    @given(data=st.binary(), policy=POLICIES)
    def check(data: bytes, policy: PatchPolicy) -> None:
        only_rejects(data.decode("utf-8", "surrogateescape"), shared_repo, policy)

    before = snapshot(shared_repo)
    check()
    assert snapshot(shared_repo) == before


@pytest.mark.parametrize("profile", PROFILES)
def test_mutated_patches_never_slip_through(shared_repo: Path, profile: str) -> None:
    @fuzz(profile, full=600)
    @given(text=mutants(), policy=POLICIES)
    def check(text: str, policy: PatchPolicy) -> None:
        only_rejects(text, shared_repo, policy)

    before = snapshot(shared_repo)
    check()
    assert snapshot(shared_repo) == before


@st.composite
def case_variants(draw: st.DrawFn) -> str:
    """A protected path respelled: any letter's case flipped, NFD, or a character that casefolds to it."""
    path = draw(
        st.sampled_from(["PiMainteno.toml", ".env", "certs/key.pem", ".github/workflows/ci.yml", ".gitmodules"])
    )
    out = []
    for c in path:
        twins = [c, c.swapcase()] + {"k": ["\u212a"], "s": ["\u017f"], "e": ["e"]}.get(c.lower(), [])
        out.append(draw(st.sampled_from(twins)))
    form = draw(st.sampled_from(["NFC", "NFD"]))
    return unicodedata.normalize(form, "".join(out))


@settings(max_examples=200, deadline=None)
@given(path=case_variants())
def test_protected_whatever_the_spelling(path: str) -> None:
    assert protected_by(path, PatchPolicy().protected) is not None


# --- reading a patch: files and stdin alike, bounded -------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
STDIN_READER = (
    "import sys; from pimainteno.patch import read_patch; "
    "sys.stdout.buffer.write(read_patch('-').encode('utf-8', 'surrogateescape'))"
)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def outcome(text: str, repo: Path) -> str:
    try:
        return check_patch(text, repo, PatchPolicy()).text
    except PatchRejected as e:
        return str(e)


@pytest.mark.parametrize("name", ["crlf.patch", "valid_crlf_file.patch", "valid_quoted_names.patch", "latin1"])
def test_file_and_stdin_read_alike(name: str, repo: Path, tmp_path: Path) -> None:
    path = CORPUS / name
    if name == "latin1":  # bytes that are not UTF-8 in a hunk line
        path = tmp_path / "latin1.patch"
        path.write_bytes((CORPUS / "valid_modify.patch").read_bytes().replace(b"+A small", b"+A sm\xe4ll"))
    with path.open("rb") as stdin:
        argv = [sys.executable, "-c", STDIN_READER]
        proc = subprocess.run(argv, stdin=stdin, capture_output=True, env=child_env(), timeout=60, check=True)
    from_file, from_stdin = read_patch(str(path)), proc.stdout.decode("utf-8", "surrogateescape")
    assert from_file == from_stdin == path.read_bytes().decode("utf-8", "surrogateescape")
    assert outcome(from_file, repo) == outcome(from_stdin, repo)
    refused = {"crlf.patch": "line 1: CRLF line ending", "latin1": "line 9 is not valid UTF-8"}.get(name)
    if refused:
        assert refused in outcome(from_file, repo)
    else:  # accepted, and what was checked is what was read
        assert outcome(from_file, repo) == from_file


def test_read_patch_limit(tmp_path: Path) -> None:
    path = tmp_path / "p.patch"
    path.write_bytes(b"x" * 100)
    assert read_patch(str(path), 100) == "x" * 100
    with pytest.raises(PatchRejected, match=r"^patch rejected: patch larger than 99 bytes$"):
        read_patch(str(path), 99)
    with pytest.raises(PatchRejected, match=r"^patch rejected: patch larger than 1000 bytes$"):
        read_patch("/dev/zero", 1000)
    with pytest.raises(InputError, match=r"^cannot read patch .*missing: No such file or directory$"):
        read_patch(str(tmp_path / "missing"))
    with pytest.raises(InputError, match=r"^cannot read patch .*: Is a directory$"):
        read_patch(str(tmp_path))


MEASURED = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_apply_dev_zero_fails_fast(source: str) -> None:
    """`apply /dev/zero` (or `apply -` fed by it) stops at the limit: one line, little memory, no wait."""
    argv = [sys.executable, "-c", MEASURED, sys.executable, "-m", "pimainteno", "apply"]
    started = time.monotonic()
    with open("/dev/zero", "rb") as zero:
        proc = subprocess.run(
            [*argv, "/dev/zero" if source == "file" else "-"],
            stdin=zero if source == "stdin" else subprocess.DEVNULL,
            capture_output=True,
            env=child_env(),
            timeout=60,
        )
    *lines, peak_kib = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 3
    assert lines == [f"Error: patch rejected: patch larger than {MAX_PATCH_BYTES} bytes"]
    assert time.monotonic() - started < 20
    assert int(peak_kib) < 4 * MAX_PATCH_BYTES // 1024  # not the gigabyte an unbounded read reached


@pytest.mark.parametrize("name", ["crlf.patch", "valid_crlf_file.patch"])
def test_apply_reads_a_file_and_stdin_alike(name: str, repo: Path, isolated: Path) -> None:
    """`apply FILE` and `apply -` decide alike: a CRLF-damaged patch is refused from both, a git diff
    of a CRLF file passes from both (issue 13 item 9)."""
    (isolated / "PiMainteno.toml").write_text(f'[[project]]\nname = "app"\npath = {json.dumps(str(repo))}\n')
    argv = [sys.executable, "-m", "pimainteno", "apply", "--project", "app", "--check"]
    results = []
    for source in ("file", "stdin"):
        with (CORPUS / name).open("rb") as patch:
            proc = subprocess.run(
                [*argv, str(CORPUS / name) if source == "file" else "-"],
                stdin=patch if source == "stdin" else subprocess.DEVNULL,
                capture_output=True,
                env=child_env(),
                timeout=120,
            )
        results.append((proc.returncode, proc.stderr.decode().strip().splitlines()[-1]))
    assert results[0] == results[1]
    if name == "crlf.patch":
        assert results[0][0] == 3 and "line 1: CRLF line ending" in results[0][1]
    else:
        assert results[0][0] == 0 and "applies cleanly" in results[0][1]
