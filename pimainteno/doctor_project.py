"""`pimainteno doctor`'s checks of one project: path, branch, remote and push, clean tree, test
command, editable installs that would make tests see the unpatched checkout, unit; and with
`--run-tests` one run of the test command in the proof sandbox, as validation runs it."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pimainteno.doctor_base import FAIL, OK, QUIET_GIT, WARN, Check, command_found, first_word, probe


def _git(project: Any, *args: str) -> tuple[bool, str]:
    return probe(["git", "-C", str(project.path), *args], env=QUIET_GIT)


def project_checks(cfg: Any, project: Any) -> Iterator[Check]:
    """One project: path, branch, remote, clean tree, test command, editable installs, unit."""
    from pimainteno.config import check_project_path

    def check(name: str, status: str, detail: str, fix: str = "") -> Check:
        return Check(name, status, detail, fix, project.name)

    problem = check_project_path(project)
    if problem:
        yield check("path", FAIL, problem, f"fix its path in {cfg.path} or `pimainteno remove {project.name}`")
        return
    yield check("path", OK, str(project.path))
    ok, current = _git(project, "symbolic-ref", "--quiet", "--short", "HEAD")
    if project.branch and current != project.branch:
        yield check("branch", WARN, f"{current or 'a detached HEAD'} is checked out, not {project.branch}",
                    f"`git -C {shlex.quote(str(project.path))} switch {project.branch}`; runs merge into the checked-out branch")  # fmt: skip
    else:
        yield check("branch", OK if ok else WARN, current or "a detached HEAD", "" if ok else "check out a branch")
    yield from _remote_checks(project, project.branch or current, check)
    ok, dirty = _git(project, "status", "--porcelain", "--untracked-files=no")
    if ok and dirty:
        yield check("working tree", WARN, "uncommitted changes to tracked files",
                    "commit or stash them; a run will not merge a patch over them")  # fmt: skip
    else:
        yield check("working tree", OK if ok else WARN, "clean" if ok else dirty)
    yield _test_check(project, check)
    yield from _editable_checks(project, check)
    if not project.restart:
        yield check("unit", OK, "restart = false: no service restarted after a push")
    else:
        from pimainteno.onboard import unit_known

        if unit_known(project.unit, user=cfg.monitor.user):
            yield check("unit", OK, f"systemd knows {project.unit}")
        else:
            yield check("unit", WARN, f"systemd does not know {project.unit}; runs will skip the restart",
                        f"set unit = \"...\" to the project's service, or restart = false, in {cfg.path}")  # fmt: skip


def _remote_checks(project: Any, branch: str | None, check: Callable[..., Check]) -> Iterator[Check]:
    ok, url = _git(project, "remote", "get-url", project.remote)
    if not ok:
        yield check(
            "remote",
            FAIL,
            f"no remote {project.remote!r}",
            f'`git remote add {project.remote} URL`, or set remote = "..."',
        )
        return
    ok, out = _git(project, "ls-remote", "--exit-code", "--heads", project.remote)
    if not ok:
        yield check(
            "remote",
            FAIL,
            f"{project.remote} ({url}) did not answer: {out}",
            "check the URL, the network and the credentials",
        )
        return
    yield check("remote", OK, f"{project.remote} ({url}) answers")
    if not branch:
        return
    ok, out = _git(
        project, "push", "--dry-run", "--porcelain", project.remote, f"HEAD:refs/heads/{project.push_branch or branch}"
    )
    local = Path(url).expanduser()
    if ok and local.is_dir() and not os.access(local, os.W_OK):
        ok, out = False, f"{local} is not writable by this user"
    if ok:
        yield check("push", OK, f"a dry-run push to {project.remote} {project.push_branch or branch} is accepted")
    elif "rejected" in out or "non-fast-forward" in out or "fetch first" in out:
        yield check(
            "push",
            WARN,
            f"{project.remote} has commits this checkout lacks",
            "`git pull`; pushes are fast-forward only",
        )
    else:
        yield check(
            "push", FAIL, f"a dry-run push was refused: {out}", "give this user push access (a deploy key, a token)"
        )


def _test_check(project: Any, check: Callable[..., Check]) -> Check:
    if project.test is None:
        from pimainteno.detect import detect_test_command

        found = detect_test_command(project.path)
        hint = f'test = "{found[0]}" ({found[1]})' if found else 'test = "the command that runs its tests"'
        return check("test command", WARN, "none: patches cannot be proven by the project's tests", f"set {hint}")
    word = first_word(project.test)
    if not word or not command_found(word, project.path):
        return check(
            "test command",
            FAIL,
            f"{word or project.test!r} not found",
            "install it or fix test = ... (run from the project's directory)",
        )
    shown = project.test if isinstance(project.test, str) else shlex.join(project.test)
    if os.sep in word and not os.path.isabs(word) and not _tracked(project, word):
        return check("test command", WARN, f"{shown}: {word} is not in git, so a fresh worktree lacks it",
                     f"runs prove patches in a fresh worktree: write its absolute path, {project.path / word}")  # fmt: skip
    dry_run = _dry_run(project.test, word)
    if dry_run is not None:
        ok, out = probe(dry_run, project.path)
        if not ok:
            return check(
                "test command", FAIL, f"{shown}: `{shlex.join(dry_run)}` fails: {out}", "install what it needs"
            )
        probe_shown = shlex.join([os.path.basename(word), *dry_run[1:]])
        return check("test command", OK, f"{shown} ({word} found; `{probe_shown}` passes)")
    return check("test command", OK, f"{shown} ({word} found)")


def _tracked(project: Any, path: str) -> bool:
    ok, out = _git(project, "ls-files", "--", path)
    return ok and bool(out)


def _dry_run(command: str | tuple[str, ...], word: str) -> list[str] | None:
    """A harmless probe that the command can start: the module imports, the Makefile has the target."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    words = words[words.index(word) :]
    if len(words) >= 3 and words[1] == "-m" and os.path.basename(word).startswith("python"):
        return [word, "-c", f"import {words[2]}"]
    if os.path.basename(word) == "make" and len(words) >= 2 and not words[1].startswith("-"):
        return [word, "-n", words[1]]
    return None


def _venvs(project: Any) -> Iterator[Path]:
    """The Python environments the project's tests may use: its own venvs and the test's interpreter."""
    seen: set[Path] = set()
    candidates = [project.path / d for d in (".venv", "venv", "env", ".tox")]
    if project.test is not None:
        word = first_word(project.test)
        if os.sep in word:
            candidates.append(Path(word).parent.parent)
    for base in candidates:
        for site in sorted(base.glob("lib/python*/site-packages")) + sorted(base.glob("*/lib/python*/site-packages")):
            if site not in seen:
                seen.add(site)
                yield site


def editable_installs(project: Any) -> list[str]:
    """Installed packages that import from the project's own checkout (`pip install -e .`, .pth files)."""
    root = project.path.resolve()
    found = []
    for site in _venvs(project):
        for direct in site.glob("*.dist-info/direct_url.json"):
            try:
                url = json.loads(direct.read_text()).get("url", "")
            except (OSError, ValueError):
                continue
            if url.startswith("file://") and Path(url[7:]).resolve().is_relative_to(root):
                found.append(f"{direct.parent.name} in {site}")
        for pth in site.glob("*.pth"):
            lines = pth.read_text(errors="replace").splitlines()
            if any(
                line.strip()
                and not line.startswith(("#", "import"))
                and Path(line.strip()).resolve().is_relative_to(root)
                for line in lines
            ):
                found.append(f"{pth.name} in {site}")
    return found


def _editable_checks(project: Any, check: Callable[..., Check]) -> Iterator[Check]:
    found = editable_installs(project)
    if not found:
        return
    what = f"{found[0]}" + (f" (and {len(found) - 1} more)" if len(found) > 1 else "") + " points into the project"
    if not project.sandbox.enabled:
        yield check("editable install", WARN, what + "; with sandbox = false the tests import the unpatched checkout",
                    "remove sandbox = false so validation runs in the proof sandbox")  # fmt: skip
    else:
        yield check(
            "editable install",
            OK,
            what + "; fine: validation runs in the proof sandbox, which shows the patched tree there",
        )


def test_runs(cfg: Any, projects: list[Any]) -> Iterator[Check]:
    """`doctor --run-tests`: each project's test command once on HEAD, in the proof sandbox with its settings."""
    import time

    from pimainteno import git, proof, sandbox
    from pimainteno.procs import tail

    for project in projects:

        def check(status: str, detail: str, fix: str = "", name: str = project.name) -> Check:
            return Check("test run", status, detail, fix, name)

        if project.test is None:
            yield check(WARN, "no test command to run", "set test = ... (see the test command check)")
            continue
        box = project.sandbox
        problem = sandbox.problem() if box.enabled else None
        if problem:
            yield check(FAIL, f"the proof sandbox cannot run: {problem}", "fix that, or set sandbox = false (unsafe)")
            continue
        shown = project.test if isinstance(project.test, str) else shlex.join(project.test)
        start = time.monotonic()
        try:
            with git.temporary_worktree(project.path, cfg.state_dir, f"{project.name}-doctor") as wt:
                result = sandbox.run_tests(project.test, wt, project.path, project.test_timeout, enabled=box.enabled,
                                           network=box.network, writable=box.writable)  # fmt: skip
        except Exception as e:  # noqa: BLE001 - the failure is the finding
            yield check(FAIL, f"{shown}: {e}", "see the message; `pimainteno doctor` lists the other checks")
            continue
        took = time.monotonic() - start
        where = "in the proof sandbox" if box.enabled else "unsandboxed (sandbox = false)"
        empty = proof.ran_no_tests(result)
        if result.timed_out:
            yield check(FAIL, f"{shown} timed out after {project.test_timeout:g}s {where}", "raise test_timeout")
        elif empty:
            yield check(FAIL, f"{shown}: {empty}; that proves nothing", "point test = ... at the real suite")
        elif not result.ok:
            last = tail(result.output, 300).strip().splitlines()[-1:] or [f"exit status {result.exit_status}"]
            yield check(FAIL, f"{shown} fails on HEAD {where} ({took:.1f}s): {last[0]}",
                        "fix the suite or set sandbox.network/writable if it needs them; every patch would be rejected")  # fmt: skip
        else:
            yield check(OK, f"{shown} passes on HEAD {where} ({took:.1f}s)")
