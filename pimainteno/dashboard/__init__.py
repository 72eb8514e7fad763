"""The dashboard: a Datasette plugin (overview, JSON API, "Run now") over pimainteno's database.

Importing this package does not import Datasette; `plugin` does (and `plugin.register()` adds it
to Datasette when its entry point did not). The modules import downwards only: plugin at the top,
then guard and routes, then overview, queries, render, runtime.
"""
