"""The set-up and service commands of `pimainteno`: init, add, remove, doctor, hooks, systemd, dashboard.

Listed in COMMANDS, which pimainteno/cli.py adds to its group; the same light-import rule holds (`--help` imports no
command module).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pimainteno import errors
from pimainteno.app import App
from pimainteno.cli_common import json_option, print_json


@click.command()
@click.argument("path", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--system", is_flag=True, help="Write /etc/pimainteno/PiMainteno.toml (root) instead of ~/.config.")
@click.pass_obj
def init(app: App, path: Path | None, system: bool) -> None:
    """Write the host's configuration (never overwrites), create the database, add PATH's repository."""
    from pimainteno.commands import init as cmd

    cmd.init(path, app.config_path, app.db_path, system=system)


@click.command()
@click.argument("path", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="The project's name [default: the directory's name].")
@json_option
@click.pass_obj
def add(app: App, path: Path, name: str | None, json_: bool) -> None:
    """Add a git repository to the configuration (name, branch, remote, unit, detected test command)."""
    from pimainteno.commands import add as cmd

    added = cmd.add(app, path, name)
    print_json({**added.values, "sources": added.sources}) if json_ else click.echo("\n".join(cmd.lines(added)))


@click.command()
@click.argument("name")
@click.pass_obj
def remove(app: App, name: str) -> None:
    """Remove a project from the configuration (its repository and records stay)."""
    from pimainteno.commands import remove as cmd

    click.echo(f"removed project {name} ({cmd.remove(app, name)}); its repository is untouched", err=True)


@click.command()
@click.argument("project", required=False)
@click.option("--run-tests", is_flag=True, help="Also run each project's test command once in the proof sandbox.")
@json_option
@click.pass_obj
def doctor(app: App, project: str | None, run_tests: bool, json_: bool) -> None:
    """Check the set-up, one line per check: ✓ fine, ! worth a look, ✗ what to fix (exit 5)."""
    from pimainteno.commands import doctor as cmd

    checks = cmd.run(app, project, run_tests=run_tests)
    print_json([c.as_dict() for c in checks]) if json_ else cmd.print_checks(checks)
    click.get_current_context().exit(cmd.exit_code(checks))


@click.command()
@click.option("--host", metavar="HOST", help="Address to listen on [default: the config's [web] host, 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), metavar="PORT", help="Port [default: [web] port; 0: any].")
@click.pass_obj
def dashboard(app: App, host: str | None, port: int | None) -> None:
    """Serve the dashboard: Datasette on the database with the pimainteno plugin."""
    from pimainteno.commands import dashboard as cmd

    cmd.dashboard(app, host, port)


@click.command("install-hook")
@click.argument("project")
@click.pass_obj
def install_hook(app: App, project: str) -> None:
    """Install the git post-merge hook that queues a run after each pull."""
    from pimainteno.commands import hooks as cmd

    proj = app.project(project)
    if app.config.path is None:
        raise errors.InputError("install-hook needs a configuration file (--config) for the hook to use")
    click.echo(
        cmd.describe(cmd.install_hook(proj, app.config.path, queue_dir=app.config.queue_dir), True, proj.name), err=True
    )


@click.command("uninstall-hook")
@click.argument("project")
@click.pass_obj
def uninstall_hook(app: App, project: str) -> None:
    """Remove the post-merge hook and restore the one it replaced."""
    from pimainteno.commands import hooks as cmd

    proj = app.project(project)
    config_path = app.config.path or Path(".")
    click.echo(cmd.describe(cmd.uninstall_hook(proj, config_path), False, proj.name), err=True)


@click.command()
@click.argument("target", metavar="PROJECT|UNIT")
@click.option(
    "--timeout", type=click.FloatRange(min=1), metavar="S", help="Wait for the job [default: restart_timeout]."
)
@click.option(
    "--settle", type=click.FloatRange(min=0), metavar="S", help="Then stay active this long [default: settle]."
)
@json_option
@click.pass_obj
def restart(app: App, target: str, timeout: float | None, settle: float | None, json_: bool) -> None:
    """Restart a project's unit (or any unit), wait, and report whether it stays healthy."""
    from pimainteno.commands import restart as cmd

    unit, project = cmd.resolve(app, target)
    done = cmd.restart(app, unit, project, timeout=timeout, settle=settle)
    if json_:
        print_json(done.__dict__)
    else:
        click.echo(f"{unit}: {'healthy' if done.healthy else 'unhealthy'} — {done.detail}")
    if not done.healthy:
        click.get_current_context().exit(errors.VALIDATION_FAILED)


@click.command()
@click.option("--for", "duration", type=click.FloatRange(min=0), metavar="SECONDS", help="Stop after SECONDS.")
@json_option
@click.pass_obj
def watch(app: App, duration: float | None, json_: bool) -> None:
    """Listen on D-Bus for failures of the monitored units; record each and queue a heal."""
    from pimainteno.commands import watch as cmd

    cmd.watch(app, duration=duration, on_record=lambda r: click.echo(json.dumps(r.as_dict()) if json_ else r.line()))


@click.command()
@click.argument("unit")
@json_option
@click.pass_obj
def heal(app: App, unit: str, json_: bool) -> None:
    """Record UNIT's failure and queue a heal, rate-limited (run by the OnFailure= drop-in)."""
    from pimainteno.commands import heal as cmd

    done = cmd.heal(app, unit)
    if done is None:
        click.echo(f"{unit} has not failed; nothing recorded", err=True)
    else:
        click.echo(json.dumps(done.as_dict()) if json_ else done.line())


@click.command("install-systemd")
@click.option("--user", "user_mode", is_flag=True, help="User units for the user manager (systemctl --user).")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR", help="Write units here.")
@click.option(
    "--enable", is_flag=True, help="Also reload systemd, enable and start the path unit, timers, watch and dashboard."
)
@click.option("--force", is_flag=True, help="Replace units that another configuration file rendered.")
@json_option
@click.pass_obj
def install_systemd(app: App, user_mode: bool, unit_dir: Path | None, enable: bool, force: bool, json_: bool) -> None:
    """Render the systemd units for this configuration and install them."""
    from pimainteno.commands import install_systemd as cmd

    actions = cmd.install_systemd(app, user=user_mode, unit_dir=unit_dir, enable=enable, force=force)
    if json_:
        print_json([a.__dict__ for a in actions])
        return
    for action in actions:
        click.echo(action.line())
    if not enable:
        click.echo("not enabled: re-run with --enable to reload systemd and start the units", err=True)


@click.command()
@click.option("--test", "test", is_flag=True, help="Send one test notification to every target in [notify] urls.")
@json_option
@click.pass_obj
def notify(app: App, test: bool, json_: bool) -> None:
    """Send a test notification to every configured target and print how each went."""
    from pimainteno.commands import notify as cmd

    if not test:
        raise click.UsageError("say what to send: `pimainteno notify --test`")
    sent = cmd.send_test(app)
    for s in sent:
        click.echo(json.dumps(s.__dict__) if json_ else cmd.line(s))
    if any(s.outcome != "sent" for s in sent):
        click.get_current_context().exit(errors.TOOL_FAILED)


COMMANDS = (
    init,
    add,
    remove,
    doctor,
    dashboard,
    install_hook,
    uninstall_hook,
    restart,
    watch,
    heal,
    install_systemd,
    notify,
)
