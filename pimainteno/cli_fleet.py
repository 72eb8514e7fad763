"""The fleet's two commands, `replicate` and `fleet`, registered on the main group by cli.py."""

from __future__ import annotations

from typing import Any

import click

from pimainteno.app import App


def _configured(app: App, need_config: bool) -> Any:
    """`[replicate]` from the configuration (None when unset; a central machine may have no file)."""
    from pimainteno.errors import ConfigError

    try:
        return app.config.replicate
    except ConfigError as e:
        if need_config or "no such file" not in str(e):
            raise
        return None


def _settings(app: App, url: str | None, name: str | None, interval: float | None, need_config: bool) -> Any:
    from pimainteno import fleet

    return fleet.resolve(_configured(app, need_config), url=url, host=name, interval=interval)


url_option = click.option("--url", metavar="URL", help="Replica URL, overriding [replicate] url.")


def interval_option(what: str) -> Any:
    # bounds and default are [replicate] interval's, checked by fleet.resolve (--help imports no schema)
    return click.option(
        "--interval", type=float, metavar="S", help=f"Seconds between {what}, overriding [replicate] interval."
    )


@click.command()
@url_option
@click.option("--name", metavar="NAME", help="This host's name in the fleet, overriding [replicate] host.")
@interval_option("syncs and heartbeats")
@click.pass_obj
def replicate(app: App, url: str | None, name: str | None, interval: float | None) -> None:
    """Stream this host's database to the fleet with Litestream (foreground)."""
    from pimainteno.commands import replicate as cmd

    settings = _settings(app, url, name, interval, need_config=True)
    click.get_current_context().exit(cmd.replicate(app, settings))


@click.command()
@click.option("--host", metavar="HOST", help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), metavar="PORT", help="Port [default: 8002; 0: any].")
@url_option
@interval_option("refreshes")
@click.pass_obj
def fleet(app: App, host: str | None, port: int | None, url: str | None, interval: float | None) -> None:
    """Serve the read-only fleet view: every host's replicated database and /-/fleet."""
    from pimainteno.commands import fleet as cmd

    cmd.serve(app, _settings(app, url, None, interval, need_config=False), host, port)


COMMANDS = (replicate, fleet)
