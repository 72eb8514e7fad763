"""The dashboard: a Datasette plugin (overview, JSON API, "Run now") over pimainteno's database.

Importing this package does not import Datasette; `plugin` does.
"""

from __future__ import annotations


def register() -> None:
    """Register the plugin with Datasette unless its entry point already did (e.g. not installed)."""
    from datasette.plugins import pm

    from pimainteno.dashboard import plugin

    if pm.get_plugin("pimainteno") is None and not pm.is_registered(plugin):
        pm.register(plugin, name="pimainteno")
