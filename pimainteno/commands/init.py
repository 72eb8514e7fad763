"""`pimainteno init [PATH]`: the host's one configuration and its database; inside a git repository
also add that repository as a project. Never writes into a project's tree, never overwrites."""

from __future__ import annotations

import logging
from pathlib import Path

from pimainteno import onboard
from pimainteno.errors import InputError

log = logging.getLogger("pimainteno")


def init(
    path: Path | None, config_path: str | None, db_override: str | None = None, *, system: bool = False
) -> tuple[Path, bool, onboard.Added | None]:
    """Write the starter (unless one exists), create the database, add ``path``'s repository.

    Returns the configuration's path, whether it was written now, and the project added (if any).
    """
    from pimainteno import config
    from pimainteno.db import open_db

    target = onboard.host_config_path(config_path, system=system)
    written = onboard.write_starter(target)
    log.info("%s %s", "wrote" if written else "kept the existing configuration", target)
    cfg = config.load(target)
    db_path = Path(db_override).expanduser() if db_override else cfg.database
    open_db(db_path).conn.close()
    log.info("database %s", db_path)

    where = (path or Path.cwd()).expanduser()
    if path is not None and not where.is_dir():
        raise InputError(f"{where} is not a directory; give the path of a git repository to add")
    added = None
    root = onboard.repo_root(where)
    if root is not None:
        if any(p.path.resolve() == root.resolve() for p in cfg.projects):
            log.info("%s is already a project in %s", root, target)
        else:
            added = onboard.add_project(target, onboard.describe_repo(root))
    elif path is not None:
        raise InputError(
            f"{where} is not inside a git repository; the configuration is ready, add one with `pimainteno add PATH`"
        )
    _next_steps(target, config_path, added)
    return target, written, added


def _next_steps(target: Path, config_path: str | None, added: onboard.Added | None) -> None:
    from pimainteno import config

    found = next((p for p in config.search_path() if p.exists()), None)
    if not config_path and found is not None and found != target:
        log.warning("note: %s comes first in the search order here; pass --config %s", found, target)
    if added is not None:
        log.info("added project %s (%s)", added.name, added.path)
        log.info("next: `pimainteno doctor`, then `pimainteno run %s`", added.name)
    else:
        log.info("next: `pimainteno add PATH` for each repository, then `pimainteno doctor`")
