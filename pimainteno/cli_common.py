"""What every `pimainteno` command module shares: the group's error handling, --json, ids.

cli.py, cli_host.py and cli_fleet.py build on it; it imports only click and light modules, so
`pimainteno --help` stays fast.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import click

from pimainteno import errors
from pimainteno.app import App

MAX_ID = 2**63 - 1  # queue.MAX_ID, SQLite's INTEGER range (queue.py is not imported: every start would pay for it)


class _Failure(click.ClickException):
    """An expected failure: one `Error: ...` line and its documented exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.PimaintenoError as e:
            from pimainteno.records import scrub  # no configured secret on stderr either

            raise _Failure(scrub(str(e)), e.exit_code) from None
        except sqlite3.Error as e:  # a locked, full or failing database is the host's fault, not a bug
            from pimainteno import db

            app = ctx.obj if isinstance(ctx.obj, App) else None
            fault = db.host_fault(e, app.__dict__.get("database_path") if app else None)
            if fault is None:
                raise
            if ctx.meta.get(JSON_META):
                click.echo(json.dumps({"error": str(fault), "exit_code": fault.exit_code}))
            raise _Failure(str(fault), fault.exit_code) from None


ROW_ID = click.IntRange(1, MAX_ID)  # every id option: what SQLite can hold; else a usage error (exit 2)


JSON_META = "pimainteno.json"  # set in ctx.meta by --json, so an error at the top can answer in JSON too


def json_option(f: Any) -> Any:
    def remember(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        ctx.meta[JSON_META] = value
        return value

    return click.option("--json", "json_", is_flag=True, callback=remember, help="Print JSON instead of text.")(f)


def print_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, default=str))
