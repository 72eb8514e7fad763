"""Check a set-up before 3 a.m. does: each check returns data (ok, warn or fail, what was found,
what to do); `pimainteno doctor` prints them. The per-project checks are in doctor_project.py. Nothing here changes the host, the repositories or
the configuration (the database is created and migrated, as every command would)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pimainteno.doctor_base import (
    FAIL,
    MARKS,
    OK,
    PROBE_TIMEOUT,
    QUIET_GIT,
    WARN,
    Check,
    command_found,
    first_word,
    probe,
)
from pimainteno.doctor_project import project_checks
from pimainteno.procs import run_command

__all__ = [  # the Check and probes are doctor_base's, re-exported for commands/doctor.py
    "FAIL", "MARKS", "OK", "QUIET_GIT", "WARN", "Check", "command_found", "first_word", "probe",
    "diverged_checks", "host_checks", "provider_checks", "replicate_checks", "run_checks", "system_checks",
]  # fmt: skip


def _dir_check(name: str, path: Path, what: str) -> Check:
    if not path.exists():
        return Check(name, OK, f"{path} (created on first use)")
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    detail = f"{path} (owner uid {info.st_uid}, mode {mode:o})"
    if info.st_uid != os.geteuid():
        return Check(name, FAIL, detail, f"owned by another user; `chown -R {os.geteuid()} {path}` or run as its owner")
    if mode & 0o022:
        return Check(name, WARN, detail, f"others can write {what}; `chmod go-w {path}`")
    if not os.access(path, os.W_OK | os.X_OK):
        return Check(name, FAIL, detail, f"not writable; `chmod u+rwx {path}`")
    return Check(name, OK, detail)


def host_checks(cfg: Any, db_path: Path) -> Iterator[Check]:
    """The configuration's surroundings: database, state and queue directories, git."""
    from pimainteno import db

    try:
        database = db.open_db(db_path)
        mode = database.execute("PRAGMA journal_mode").fetchone()[0]
        database.execute("BEGIN IMMEDIATE")  # takes the write lock: proves the file is writable
        database.execute("ROLLBACK")
        database.conn.close()
        if mode.lower() != "wal":
            yield Check(
                "database",
                WARN,
                f"{db_path} is in {mode} mode",
                "other commands may wait on it; check the filesystem supports WAL",
            )
        else:
            yield Check("database", OK, f"{db_path} (migrated, WAL, writable)")
    except Exception as e:  # noqa: BLE001 - any failure to open is the finding
        yield Check("database", FAIL, f"{db_path}: {e}", "fix the path ([database] path or --db) or its permissions")
    yield _dir_check("state directory", cfg.state_dir, "the state directory")
    yield _dir_check("queue directory", cfg.queue_dir, "the queue (anyone could queue runs)")
    git = shutil.which("git")
    if git is None:
        yield Check("git", FAIL, "git not found on PATH", "apt install git")
    else:
        ok, out = probe([git, "--version"])
        yield Check("git", OK if ok else FAIL, out or git, "" if ok else "reinstall git")


def provider_checks(cfg: Any) -> Iterator[Check]:
    """Each provider in use: codex found, its version, its sandbox; or the fixer command found."""
    used = {cfg.provider_for(p) for p in cfg.projects} or {cfg.llm.provider}
    if "codex" in used:
        yield from _codex_checks(cfg.llm)
    if "command" in used:
        commands = [p.command or cfg.llm.command for p in cfg.projects if cfg.provider_for(p) == "command"] or [
            cfg.llm.command
        ]
        for command in dict.fromkeys(c if isinstance(c, str) or c is None else tuple(c) for c in commands):
            if command is None:
                yield Check(
                    "fixer",
                    FAIL,
                    'provider = "command" but no command is set',
                    'set [llm] command = "ruff check --fix ." (any fixer)',
                )
            elif command_found(first_word(command), Path.cwd()):
                yield Check("fixer", OK, f"{first_word(command)} found")
            else:
                yield Check(
                    "fixer", FAIL, f"{first_word(command)!r} not found on PATH", "install it or fix [llm] command"
                )
    if "llm" in used:
        ok = importlib.util.find_spec("llm") is not None
        yield Check(
            "llm",
            OK if ok else FAIL,
            "the llm library " + ("is installed" if ok else "is missing"),
            "" if ok else "pip install 'pimainteno[llm]'",
        )


def _codex_checks(llm: Any) -> Iterator[Check]:
    from pimainteno.errors import ToolError
    from pimainteno.providers.codex_version import codex_version, find_codex, version_warning

    try:
        codex = find_codex(llm)
    except ToolError as e:
        yield Check("codex", FAIL, str(e).split(";")[0], "npm install -g @openai/codex, or set [llm] codex = PATH")
        return
    # the same one line `status` shows (providers.codex.version_warning): a warning, never an error
    warning = version_warning(llm)
    if warning:
        yield Check("codex", WARN, f"{codex}: {warning}")
    else:
        yield Check("codex", OK, f"{codex} version {codex_version(codex)} (tested)")
    helptext = run_command([codex, "sandbox", "--help"], Path("/"), PROBE_TIMEOUT).output
    # codex 0.169-0.171 run `codex sandbox -- CMD`; older releases had a `linux` subcommand
    argv = (
        [codex, "sandbox", "linux", "--", "true"]
        if re.search(r"^\s+linux\s", helptext, re.M)
        else [codex, "sandbox", "--", "true"]
    )
    ok, out = probe(argv)
    home = os.environ.get("CODEX_HOME", "")
    if ok:
        yield Check("codex sandbox", OK, f"`{shlex.join(argv[1:])}` runs a command")
    elif home.startswith("/tmp/") and "execvp" in out:
        yield Check(
            "codex sandbox",
            FAIL,
            f"cannot run a command: {out}",
            f"CODEX_HOME={home} is under /tmp, where codex refuses its helper; move it (e.g. to ~/.codex)",
        )
    else:
        yield Check(
            "codex sandbox",
            FAIL,
            f"cannot run a command: {out}",
            "install bubblewrap and allow user namespaces (see the bubblewrap check)",
        )


def system_checks(cfg: Any) -> Iterator[Check]:
    """systemd (bus and pystemd), bubblewrap and user namespaces, the dashboard's secret and address."""
    # runs skip the restart when there is no systemd (and say so); only the watcher cannot do without
    needs_systemd = cfg.monitor.enabled
    systemctl = shutil.which("systemctl")
    ok, out = (
        probe([systemctl, *(["--user"] if cfg.monitor.user else []), "is-system-running"])
        if systemctl
        else (False, "systemctl not found")
    )
    reachable = ok or out in ("degraded", "starting", "initializing", "maintenance", "stopping")
    level = FAIL if needs_systemd else WARN
    if reachable:
        yield Check("systemd", OK, f"bus reachable ({out or 'running'})")
    else:
        yield Check(
            "systemd",
            level,
            f"bus not reachable: {out}",
            "restarts, watch and heal need systemd; without it set restart = false",
        )
    if importlib.util.find_spec("pystemd") is not None:
        yield Check("pystemd", OK, "installed (restart, watch, heal)")
    else:
        yield Check("pystemd", level if reachable else WARN, "not installed: restart, watch, heal and rollback cannot talk to systemd",
                    "apt install libsystemd-dev pkg-config gcc && pip install 'pimainteno[systemd]'")  # fmt: skip
    from pimainteno import sandbox

    # the very check a run makes before proving a patch (sandbox.problem), so doctor and runs agree
    problem = sandbox.problem()
    if problem is None:
        yield Check("bubblewrap", OK, "bwrap starts the proof sandbox (no network, no capabilities)")
    else:
        yield Check("bubblewrap", FAIL, problem.split("; ")[0], problem.split("; ", 1)[1] if "; " in problem else "")
    yield from _dashboard_checks(cfg)


def _dashboard_checks(cfg: Any) -> Iterator[Check]:
    secret = cfg.state_dir / "dashboard-secret"
    if not secret.exists():
        yield Check("dashboard secret", OK, f"{secret} is created on the first `pimainteno dashboard`")
    else:
        mode = stat.S_IMODE(secret.stat().st_mode)
        fix = "" if not mode & 0o077 else f"others can read it and sign logins: `chmod 600 {secret}`"
        yield Check("dashboard secret", FAIL if fix else OK, f"{secret} (mode {mode:o})", fix)
    host = cfg.web.host
    if host in ("127.0.0.1", "::1", "localhost"):
        yield Check("dashboard address", OK, f"{host}:{cfg.web.port} (this machine only)")
    else:
        yield Check("dashboard address", WARN, f"{host}:{cfg.web.port} is reachable from other machines",
                    "put an authenticating proxy in front, or bind [web] host = \"127.0.0.1\"")  # fmt: skip


def replicate_checks(cfg: Any, db_path: Path) -> Iterator[Check]:
    """[replicate] is set: litestream, the replica, and whether replication keeps up (docs/fleet.md)."""
    from pimainteno import fleet_units

    for status, detail, fix in fleet_units.check(cfg.replicate, db_path):
        yield Check("replication", status, detail, fix)


def diverged_checks(db_path: Path, projects: list[Any]) -> Iterator[Check]:
    """A project whose remote moved on in a way pimainteno could not replay on (pipeline/pending.py)."""
    if not db_path.exists():
        return
    from pimainteno import db, records

    try:
        database = db.open_db(db_path)
    except Exception:  # noqa: BLE001 - host_checks already reported the database
        return
    for p in projects:
        why = records.status_value(database, f"diverged.{p.name}")
        if why:
            yield Check("diverged", WARN, why, "merge or rebase the remote's branch in the checkout (git pull); "
                        "the next run then pushes", p.name)  # fmt: skip
    database.conn.close()


def run_checks(config_path: str | None, db_override: str | None, project: str | None = None) -> list[Check]:
    """Every check, in order; a configuration that does not load is the only check then."""
    from pimainteno import config

    try:
        cfg = config.load(config_path)
    except Exception as e:  # noqa: BLE001 - the configuration's error is the finding
        return [Check("configuration", FAIL, str(e), "fix it, or run `pimainteno init` to write one")]
    checks = [Check("configuration", OK, f"{cfg.path} ({len(cfg.projects)} project{'s' * (len(cfg.projects) != 1)})")]
    if not cfg.projects:
        checks[0] = Check(
            "configuration", WARN, f"{cfg.path} has no projects", "`pimainteno add PATH` for each repository"
        )
    projects = [cfg.project(project)] if project else list(cfg.projects)
    db_path = Path(db_override).expanduser() if db_override else cfg.database
    checks += host_checks(cfg, db_path)
    for p in projects:
        checks += project_checks(cfg, p)
    checks += diverged_checks(Path(db_override).expanduser() if db_override else cfg.database, projects)
    checks += provider_checks(cfg)
    checks += system_checks(cfg)
    if cfg.replicate is not None:
        checks += replicate_checks(cfg, db_path)
    return checks
