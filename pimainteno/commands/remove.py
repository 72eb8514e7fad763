"""`pimainteno remove NAME`: drop a project from the host's configuration (its repository stays)."""

from __future__ import annotations

from pathlib import Path

from pimainteno import onboard
from pimainteno.app import App


def remove(app: App, name: str) -> Path:
    from pimainteno import config

    return onboard.remove_project(config.find_config(app.config_path), name)
