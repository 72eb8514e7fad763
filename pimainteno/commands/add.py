"""`pimainteno add [PATH]`: add a git repository to the host's configuration as a [[project]]."""

from __future__ import annotations

import json
from pathlib import Path

from pimainteno import onboard
from pimainteno.app import App


def add(app: App, path: Path, name: str | None = None) -> onboard.Added:
    from pimainteno import config

    target = config.find_config(app.config_path)
    return onboard.add_project(target, onboard.describe_repo(path.expanduser(), name))


def lines(added: onboard.Added) -> list[str]:
    """What was written, one `key = value  # where it came from` line each."""
    out = [f"added project {added.name}:"]
    out += [f"  {k} = {json.dumps(v)}  # {added.sources[k]}" for k, v in added.values.items()]
    out += [f"  # {note}" for note in added.notes]
    return out
