"""The `pimainteno` command: global options and thin wiring to pimainteno.commands.

Imports stay light here so `pimainteno --help` starts fast: each command imports its module
(and with it the database, git, providers, Datasette or pystemd) only when it runs.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from pimainteno import __version__, errors
from pimainteno.app import App, setup_logging

log = logging.getLogger("pimainteno")


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
            raise _Failure(str(e), e.exit_code) from None


def json_option(f: Any) -> Any:
    return click.option("--json", "json_", is_flag=True, help="Print JSON instead of text.")(f)


def print_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, default=str))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="PIMAINTENO_CONFIG",
    metavar="FILE",
    help="Configuration file [env PIMAINTENO_CONFIG; else ./PiMainteno.toml, ~/.config/pimainteno/, /etc/pimainteno/].",
)
@click.option(
    "--db",
    "db_path",
    envvar="PIMAINTENO_DB",
    metavar="FILE",
    help="Database file [env PIMAINTENO_DB; else the config's database path].",
)
@click.option("-v", "--verbose", count=True, help="More detail on stderr, tracebacks included.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.version_option(__version__, prog_name="pimainteno")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, db_path: str | None, verbose: int, quiet: bool) -> None:
    """Keep code projects healthy: summarize, propose, prove, commit, push, restart, roll back."""
    verbosity = -1 if quiet else verbose
    setup_logging(verbosity)
    ctx.obj = App(config_path, db_path, verbosity)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False), default=".")
@click.pass_obj
def init(app: App, directory: str) -> None:
    """Write a starter PiMainteno.toml and create the database."""
    from pimainteno.commands import init as cmd

    cmd.init(Path(directory), app.db_path)


@cli.command()
@json_option
@click.pass_obj
def projects(app: App, json_: bool) -> None:
    """List the configured projects with their last run."""
    from pimainteno.commands import projects as cmd

    rows = cmd.list_projects(app)
    print_json(rows) if json_ else cmd.print_projects(rows)


@cli.command()
@json_option
@click.pass_obj
def status(app: App, json_: bool) -> None:
    """Show monitors, queue, latest runs and model usage."""
    from pimainteno.commands import status as cmd

    report = cmd.status(app)
    print_json(report) if json_ else cmd.print_status(report)


def _log_file() -> Path:
    from pimainteno.config import default_state_dir

    path = default_state_dir() / "log" / "pimainteno.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _on_sigterm(signum: int, frame: Any) -> NoReturn:
    # systemd stops us with SIGTERM: unwind like Ctrl-C so worktrees and locks are cleaned up.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: expected errors are one line, unexpected ones one line plus a logged traceback."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    verbose = any(
        a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in (argv or sys.argv[1:])
    )
    try:
        code = cli.main(args=argv, prog_name="pimainteno", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        sys.exit(errors.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(errors.INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:
        where = "above"
        if verbose:
            traceback.print_exc()
        else:
            try:
                path = _log_file()
                with path.open("a") as f:
                    f.write(traceback.format_exc() + "\n")
                where = f"in {path}"
            except OSError:
                traceback.print_exc()
        click.echo(f"Error: unexpected {type(e).__name__}: {e} (a bug; traceback {where})", err=True)
        sys.exit(errors.UNEXPECTED)
    sys.exit(code if isinstance(code, int) else 0)
