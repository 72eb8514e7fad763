"""`pimainteno doctor [PROJECT]`: check the set-up, one line per check, what to do for each ✗ or !."""

from __future__ import annotations

import click

from pimainteno import doctor
from pimainteno.app import App


def run(app: App, project: str | None, *, run_tests: bool = False) -> list[doctor.Check]:
    checks = doctor.run_checks(app.config_path, app.db_path, project)
    if run_tests and checks[0].status != doctor.FAIL:
        from pimainteno.doctor_project import test_runs

        cfg = app.config
        checks += test_runs(cfg, [cfg.project(project)] if project else list(cfg.projects))
    return checks


def print_checks(checks: list[doctor.Check]) -> None:
    for c in checks:
        click.echo(c.line())
    counts = {s: sum(c.status == s for c in checks) for s in (doctor.FAIL, doctor.WARN)}
    click.echo(f"{counts[doctor.FAIL]} to fix (✗), {counts[doctor.WARN]} to look at (!)", err=True)


def exit_code(checks: list[doctor.Check]) -> int:
    """0 when nothing is ✗ (warnings are advice), else 5."""
    from pimainteno.errors import VALIDATION_FAILED

    return VALIDATION_FAILED if any(c.status == doctor.FAIL for c in checks) else 0
