"""`pimainteno init [DIR]`: a commented starter configuration and the database."""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

from pimainteno import config
from pimainteno.errors import InputError

log = logging.getLogger("pimainteno")


def starter_config(directory: Path) -> str:
    template = resources.files("pimainteno").joinpath("templates/starter.toml").read_text()
    project = ""
    if (directory / ".git").exists():
        project = (
            "\n[[project]]\n"
            f"path = {_toml_string(str(directory.resolve()))}\n"
            '# test = "python -m pytest -q"   # proves every patch before it lands\n'
            '# mode = "push"                  # propose, apply, commit or push\n'
        )
    else:
        project = (
            '\n# [[project]]\n# path = "~/src/app"               # a git repository\n# test = "python -m pytest -q"\n'
        )
    return template % {"projects": project}


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init(directory: Path, db_override: str | None = None) -> tuple[Path, Path]:
    directory = directory.expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory.resolve() / config.CONFIG_NAME
    try:
        # "x": never overwrite, even if another process writes the file meanwhile.
        with open(target, "x") as f:
            f.write(starter_config(directory))
    except FileExistsError:
        raise InputError(f"{target} already exists; not overwriting it (edit it, or pass another DIR)") from None
    except OSError as e:
        raise InputError(f"cannot write {target}: {e.strerror}") from None
    try:
        cfg = config.load(target)
    except Exception:
        os.unlink(target)  # a starter that does not load is our bug; leave nothing half-done
        raise
    from pimainteno.db import open_db

    db_path = Path(db_override).expanduser() if db_override else cfg.database
    open_db(db_path).conn.close()
    log.info("wrote %s", target)
    log.info("database %s", db_path)
    log.info("next: add a [[project]] to it, then `pimainteno projects` and `pimainteno status`")
    return target, db_path
