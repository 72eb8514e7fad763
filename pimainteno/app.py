"""What every command receives: the configuration and the database, each loaded on first use."""

from __future__ import annotations

import logging
import os
import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded on first use: `pimainteno --help` needs neither
    import sqlite_utils

    from pimainteno import config as config_mod

log = logging.getLogger("pimainteno")


class App:
    def __init__(self, config_path: str | None = None, db_path: str | None = None, verbosity: int = 0):
        self.config_path = config_path
        self.db_path = db_path
        self.verbosity = verbosity

    @cached_property
    def config(self) -> config_mod.Config:
        from pimainteno import config as config_mod
        from pimainteno import records

        config = config_mod.load(self.config_path)
        records.remember_secrets(config)  # scrubbed from everything stored or logged from now on
        if "db" in self.__dict__:
            records.sync_projects(self.__dict__["db"], config.projects, config.llm.provider)
        return config

    @cached_property
    def database_path(self) -> Path:
        if self.db_path:
            return Path(self.db_path).expanduser()
        return self.config.database

    @cached_property
    def db(self) -> sqlite_utils.Database:
        from pimainteno import db, records

        database = db.open_db(self.database_path)
        if "config" in self.__dict__:  # the `projects` table mirrors the configuration once both are loaded
            records.sync_projects(database, self.config.projects, self.config.llm.provider)
        return database

    def project(self, name: str) -> config_mod.Project:
        """A configured project whose path is a usable git repository, or a one-line error."""
        from pimainteno.config import check_project_path

        project = self.config.project(name)
        problem = check_project_path(project)
        if problem:
            from pimainteno.errors import InputError

            raise InputError(f"{problem}; fix its path in {self.config.path}")
        return project

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def state_subdir(self, name: str) -> Path:
        """A private directory under the state directory (created 0700 on first use)."""
        path = self.state_dir / name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path


def log_file() -> Path:
    """Where unexpected errors leave their traceback."""
    from pimainteno.config import default_state_dir

    path = default_state_dir() / "log" / "pimainteno.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _scrub_record(record: logging.LogRecord) -> bool:
    """No configured secret reaches the log: the formatted message is scrubbed (issue 13, item 5)."""
    from pimainteno.records import scrub

    record.msg, record.args = scrub(record.getMessage()), None
    return True


def setup_logging(verbosity: int) -> None:
    """Progress on stderr: plain lines for a terminal, no timestamps under systemd (journald adds them)."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    under_systemd = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = "%(message)s" if under_systemd or sys.stderr.isatty() else "pimainteno: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(_scrub_record)
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
