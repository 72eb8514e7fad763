"""`install-systemd --enable` on a real systemd (tests/sandbox.py): the installed units chain.

The timer's service runs the pipeline, a trigger in the queue starts the drain through the path
unit, the OnFailure= drop-in starts the heal service, and breaking the monitored service ends in
a pushed fix with the service healthy again — all through the units as installed, with their
hardening (the files live outside /tmp, so PrivateTmp= is on as on a real host).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox import SystemdSandbox
from tests.systemd.project import git, make_project, pm, query, service_unit, wait_for, workdir

pytestmark = pytest.mark.systemd

EXTRA = """\
[scheduler]
schedule = "daily"

[systemd_monitor]
enabled = true
units = ["pm-crash.service"]
settle = 1.5
"""
UNITS = ("pimainteno-drain.path", "pimainteno-run@app.timer", "pimainteno-watch.service")


Setup = tuple[SystemdSandbox, Path, Path]


@pytest.fixture(scope="module")
def installed(systemd_sandbox: SystemdSandbox) -> Iterator[tuple[SystemdSandbox, Path, Path, Any]]:
    """One installation for the module's tests, made here: each test stands alone, in any order and
    on any xdist worker (each worker boots its own sandbox for the tests it gets)."""
    with workdir("chain") as root:
        config = make_project(root, extra=EXTRA)
        systemd_sandbox.write_unit("demo-app.service", service_unit(root))
        systemd_sandbox.systemctl("start", "demo-app.service")
        systemd_sandbox.write_unit(
            "pm-crash.service", "[Service]\nExecStart=/bin/sh -c 'echo pm-crash-marker; exit 4'\n"
        )
        first = pm(systemd_sandbox, config, "install-systemd", "--enable")
        yield systemd_sandbox, root, config, first
        systemd_sandbox.systemctl("disable", "--now", *UNITS, check=False)


@pytest.fixture
def setup(installed: tuple[SystemdSandbox, Path, Path, Any]) -> Setup:
    """The installation, with its watch listening."""
    sandbox, root, config, first = installed
    assert first.returncode == 0, first.stderr
    wait_for("the watch", lambda: query(root, "SELECT value FROM status WHERE key = 'systemd.status'") == [
        ("listening",)
    ])  # fmt: skip
    return sandbox, root, config


def journal(sandbox: SystemdSandbox, unit: str) -> str:
    return sandbox.run(["journalctl", "-u", unit, "-o", "cat", "--no-pager"]).stdout


def test_install_enable_sets_everything_up_and_is_idempotent(installed: tuple[SystemdSandbox, Path, Path, Any]) -> None:
    sandbox, root, config, first = installed
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "wrote     /etc/systemd/system/pimainteno-watch.service" in lines
    assert "wrote     /etc/systemd/system/demo-app.service.d/pimainteno-heal.conf" in lines
    assert "ran       systemctl daemon-reload" in lines
    assert "ran       systemctl enable --now pimainteno-run@app.timer" in lines
    for unit in UNITS:
        assert sandbox.systemctl("is-enabled", unit).stdout.strip() == "enabled", unit
        assert sandbox.systemctl("is-active", unit).stdout.strip() == "active", unit
    timers = sandbox.systemctl("list-timers", "--all", "--no-legend", "pimainteno-run@*").stdout
    assert "pimainteno-run@app.timer" in timers and "pimainteno-run@app.service" in timers
    wait_for("the watch", lambda: query(root, "SELECT value FROM status WHERE key = 'systemd.status'") == [
        ("listening",)
    ])  # fmt: skip

    again = pm(sandbox, config, "install-systemd", "--enable", "--json")
    assert again.returncode == 0, again.stderr
    assert {a["what"] for a in json.loads(again.stdout)} == {"unchanged", "ran"}
    assert all(sandbox.systemctl("is-active", unit).stdout.strip() == "active" for unit in UNITS)


def test_the_timers_service_runs_the_pipeline(setup: Setup) -> None:
    sandbox, root, _ = setup
    repo = root / "demo-app"  # something for ruff (the fixer) to fix, whatever this worker's other tests fixed
    (repo / "demo_app" / "units.py").write_text("import os\n\nKELVIN = 273.15\n")
    git(repo, "add", "demo_app/units.py")
    git(repo, "commit", "-qm", "Add the kelvin offset")
    sandbox.systemctl("start", "pimainteno-run@app.service")  # a oneshot: returns when the run is over
    (run,) = query(root, "SELECT id, trigger, status, steps, commit_sha FROM runs WHERE trigger = 'timer'")
    assert run[1:3] == ("timer", "ok"), journal(sandbox, "pimainteno-run@app.service")
    steps = {s["step"]: s for s in json.loads(run[3])}
    assert steps["restart"]["outcome"] == "ok" and "demo-app.service stayed active" in steps["restart"]["detail"]
    assert git(root / "remote.git", "rev-parse", "main").strip() == run[4]  # pushed
    assert query(root, "SELECT outcome FROM restarts WHERE run_id = ?", (run[0],)) == [("healthy",)]


def test_a_trigger_in_the_queue_starts_the_drain(setup: Setup) -> None:
    sandbox, root, config = setup
    result = pm(sandbox, config, "enqueue", "app", "--reason", "from the test")
    assert result.returncode == 0, result.stderr
    (trigger,) = wait_for("the drain", lambda: query(
        root, "SELECT source, reason, status, detail FROM triggers WHERE reason = 'from the test' AND status != 'queued'"
    ))  # fmt: skip
    # the run's own result depends on what the module's other tests left on this worker: nothing, or a fix
    assert trigger[:3] == ("cli", "from the test", "done") and trigger[3] in ("nothing", "ok"), trigger
    wait_for("an empty queue", lambda: not list((root / "state" / "queue").glob("*.json")))


def test_the_on_failure_drop_in_starts_the_heal_service(setup: Setup) -> None:
    sandbox, root, _ = setup
    sandbox.systemctl("start", "pm-crash.service", check=False)
    heal = "pimainteno-heal@pm-crash.service"  # not pm-crash.service.service
    wait_for(heal, lambda: "failure #" in journal(sandbox, heal))
    assert sandbox.systemctl("show", "-p", "Result", "--value", heal).stdout.strip() == "success"
    # The watch saw it too: recorded once, whoever came first (no project has this unit: no heal).
    (row,) = query(root, "SELECT unit, heal, source, journal FROM failures WHERE unit = 'pm-crash.service'")
    assert row[:2] == ("pm-crash.service", "none") and row[2] in ("watch", "on-failure")
    assert "pm-crash-marker" in row[3]


def test_breaking_the_service_ends_in_a_pushed_fix_and_a_healthy_service(setup: Setup, record_property: Any) -> None:
    sandbox, root, config = setup
    repo = root / "demo-app"
    serve = (repo / "serve.py").read_text()
    (repo / "serve.py").write_text(
        serve.replace("while True:", 'raise SystemExit("fatal: settings file is missing")  # BREAK\nwhile True:')
    )
    git(repo, "commit", "-qam", "Require a settings file")
    broken_at = time.monotonic()
    sandbox.systemctl("restart", "demo-app.service", check=False)

    failure = wait_for(
        "the failure", lambda: query(root, "SELECT id, heal FROM failures WHERE unit = 'demo-app.service'")
    )
    record_property("break_to_failure_row_s", time.monotonic() - broken_at)
    assert failure == [(failure[0][0], "queued")]
    run = wait_for(
        "the heal run",
        lambda: query(
            root,
            "SELECT id, trigger, status, error FROM runs WHERE failure_id = ? AND status != 'running'",
            (failure[0][0],),
        ),  # fmt: skip
        timeout=120,
    )
    record_property("break_to_healed_s", time.monotonic() - broken_at)
    assert run[0][1:] == ("watch", "ok", None) or run[0][1:] == ("on-failure", "ok", None), run
    assert query(root, "SELECT run_id FROM failures WHERE unit = 'demo-app.service'") == [(run[0][0],)]
    assert "# BREAK" not in (repo / "serve.py").read_text()
    diff = query(root, "SELECT diff FROM proposals WHERE failure_id = ?", (failure[0][0],))[0][0]
    assert '-raise SystemExit("fatal: settings file is missing")  # BREAK' in diff
    assert git(root / "remote.git", "rev-parse", "main") == git(repo, "rev-parse", "HEAD")
    assert sandbox.systemctl("is-active", "demo-app.service").stdout.strip() == "active"
    status = pm(sandbox, config, "status")
    assert f"failure #{failure[0][0]} demo-app.service exit-code" in status.stdout
    assert "listening" in status.stdout
