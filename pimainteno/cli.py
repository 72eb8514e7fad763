"""The `pimainteno` command: global options and thin wiring to pimainteno.commands.

Imports stay light here so `pimainteno --help` starts fast: each command imports its module
(and with it the database, git, providers, Datasette or pystemd) only when it runs.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from pimainteno import __version__, errors
from pimainteno.app import App, log_file, setup_logging
from pimainteno.cli_common import ROW_ID, Group, json_option, print_json

__all__ = ["ROW_ID", "cli", "json_option", "main", "print_json"]

log = logging.getLogger("pimainteno")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


@cli.command()
@click.argument("project")
@click.option("--force", is_flag=True, help="Ask again even if HEAD has not changed.")
@json_option
@click.pass_obj
def summarize(app: App, project: str, force: bool, json_: bool) -> None:
    """Print the project's summary (cached by HEAD) and write its summary file."""
    from pimainteno.commands import summarize as cmd

    proj = app.project(project)
    text, cached = cmd.summarize(app, proj, force=force)
    print_json({"project": proj.name, "cached": cached, "summary": text}) if json_ else click.echo(text)


@cli.command()
@click.argument("project")
@click.option("--reason", help="Why a change is wanted (always asks the provider).")
@click.option(
    "--failure", "failure_id", type=ROW_ID, metavar="ID", help="A recorded failure to fix (its journal goes along)."
)
@click.pass_obj
def propose(app: App, project: str, reason: str | None, failure_id: int | None) -> None:
    """Print a patch for the project on stdout (empty: nothing to propose)."""
    from pimainteno.commands import propose as cmd
    from pimainteno.patch import format_patch

    proposal = cmd.propose(app, app.project(project), reason=reason, failure_id=failure_id)
    if proposal:
        click.echo(format_patch(proposal.diff, proposal.project, proposal.id), nl=False)


@cli.command()
@click.argument("patch_file", metavar="[FILE|-]", required=False)
@click.option("--project", "project_name", metavar="P", help="The project (default: named in the patch).")
@click.option("--proposal", "proposal_id", type=ROW_ID, metavar="N", help="Apply stored proposal N.")
@click.option("--check", "check_only", is_flag=True, help="Only validate; change nothing.")
@click.pass_obj
def apply(
    app: App, patch_file: str | None, project_name: str | None, proposal_id: int | None, check_only: bool
) -> None:
    """Validate a patch and apply it to the project's working tree (staged)."""
    from pimainteno.commands import apply as cmd
    from pimainteno.patch import read_patch

    if proposal_id is None and patch_file is None and sys.stdin.isatty():
        raise click.UsageError("no patch: pass FILE, - for stdin, or --proposal N")
    text = None if proposal_id is not None else read_patch(patch_file)
    cmd.apply(app, text, project_name=project_name, proposal_id=proposal_id, check_only=check_only)


@cli.command()
@click.argument("project")
@click.option("-m", "--message", help="Use this message instead of asking the provider.")
@json_option
@click.pass_obj
def commit(app: App, project: str, message: str | None, json_: bool) -> None:
    """Commit the applied patch with a model-written message."""
    from pimainteno.commands import commit as cmd

    done = cmd.commit(app, app.project(project), message=message)
    print_json(done.__dict__) if json_ else click.echo(f"{done.sha} {done.message.splitlines()[0]}")


@cli.command()
@click.argument("project")
@click.pass_obj
def push(app: App, project: str) -> None:
    """Fast-forward push HEAD to the configured remote and branch (never forced)."""
    from pimainteno.commands import push as cmd

    proj = app.project(project)
    ref = cmd.push(app, proj)
    click.echo(f"pushed {proj.name} to {proj.remote} {ref}", err=True)


@cli.command()
@click.argument("projects", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every configured project.")
@click.option("--trigger", default="cli", show_default=True, help="What started the run (recorded).")
@click.option("--failure", "failure_id", type=ROW_ID, metavar="ID", help="Heal: propose a fix for this failure.")
@click.option("--reason", help="Why a change is wanted (always asks the provider).")
@click.option("--retry-known", is_flag=True,
              help="Try a change again although the same one was rejected or rolled back before.")  # fmt: skip
@json_option
@click.pass_obj
def run(app: App, projects: tuple[str, ...], all_: bool, trigger: str, failure_id: int | None, reason: str | None,
        retry_known: bool, json_: bool) -> None:  # fmt: skip
    """Run the whole chain: summarize, propose, validate, apply, commit, push, restart (or roll back)."""
    from pimainteno.commands import run as cmd

    if bool(projects) == all_:
        raise click.UsageError("name projects or pass --all (not both)")
    names = [p.name for p in app.config.projects] if all_ else list(projects)
    show = cmd.as_json if json_ else cmd.summary_line
    outcomes = cmd.run_many(app, names, keep_going=all_, on_outcome=lambda o: click.echo(show(o)),
                            trigger=trigger, failure_id=failure_id, reason=reason, retry_known=retry_known)  # fmt: skip
    click.get_current_context().exit(cmd.exit_code(outcomes))


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.pass_obj
def demo(app: App, directory: str | None) -> None:
    """Run the whole chain offline on a throwaway sample project."""
    from pimainteno.commands import demo as cmd

    code = cmd.demo(Path(directory) if directory else None, app.verbosity)
    click.get_current_context().exit(code)


@cli.command()
@click.argument("project")
@click.option("--reason", help="Why a change is wanted (recorded; the run then always asks the provider).")
@click.option(
    "--kind",
    type=click.Choice(["run", "heal", "apply", "reject"]),
    help="What to run [default: run; heal with --failure, apply with --proposal].",
)
@click.option("--failure", "failure_id", type=ROW_ID, metavar="ID", help="Heal: the recorded failure to fix.")
@click.option("--proposal", "proposal_id", type=ROW_ID, metavar="N", help="Apply (or reject) stored proposal N.")
@click.option("--source", default="cli", hidden=True, help="Who asks: cli, hook, dashboard, timer, watch, on-failure.")
@json_option
@click.pass_obj
def enqueue(app: App, project: str, reason: str | None, kind: str | None, failure_id: int | None,
            proposal_id: int | None, source: str, json_: bool) -> None:  # fmt: skip
    """Queue a run of the project for `drain` (fast; never opens the database)."""
    from pimainteno.commands import enqueue as cmd

    path, merged, kind = cmd.enqueue(app, project, kind=kind, source=source, reason=reason, failure_id=failure_id,
                                     proposal_id=proposal_id)  # fmt: skip
    if json_:
        print_json({"project": project, "kind": kind, "file": str(path), "merged": merged})


@cli.command()
@click.option("--follow", is_flag=True, help="Keep draining (every second) until Ctrl-C, for machines without systemd.")
@json_option
@click.pass_obj
def drain(app: App, follow: bool, json_: bool) -> None:
    """Run every queued trigger, oldest first, and record each one."""
    from pimainteno.commands import drain as cmd

    on_record = (lambda r: click.echo(json.dumps(r))) if json_ else cmd.print_record
    if any(r["status"] == "failed" for r in cmd.drain(app, follow=follow, on_record=on_record)):
        click.get_current_context().exit(errors.TOOL_FAILED)


# The set-up, service and fleet commands live beside this module, each module listing its commands.
from pimainteno.cli_fleet import COMMANDS as _FLEET_COMMANDS  # noqa: E402
from pimainteno.cli_host import COMMANDS as _HOST_COMMANDS  # noqa: E402

for _command in (*_HOST_COMMANDS, *_FLEET_COMMANDS):
    cli.add_command(_command)


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
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Interrupted.", err=True)
        sys.exit(errors.INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:
        from pimainteno.records import scrub

        where = "above"
        if verbose:
            traceback.print_exc()
        else:
            try:
                path = log_file()
                with path.open("a") as f:
                    f.write(scrub(traceback.format_exc()) + "\n")
                where = f"in {path}"
            except OSError:
                traceback.print_exc()
        click.echo(scrub(f"Error: unexpected {type(e).__name__}: {e} (a bug; traceback {where})"), err=True)
        sys.exit(errors.UNEXPECTED)
    sys.exit(code if isinstance(code, int) else 0)
