"""`restart` and the restart + rollback steps of `run`, against a real systemd (tests/sandbox.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pimainteno import errors
from tests.sandbox import REPO, SystemdSandbox
from tests.systemd.project import PY, git, make_project, pm, query, service_unit, service_workdir, wait_for

pytestmark = pytest.mark.systemd


@pytest.fixture
def root(systemd_sandbox: SystemdSandbox) -> Iterator[Path]:
    with service_workdir(systemd_sandbox, "restart") as path:
        yield path


def test_restart_reports_healthy_unhealthy_and_missing_units(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, extra="[systemd_monitor]\nsettle = 1.5\n")
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    healthy = pm(systemd_sandbox, config, "restart", "app")  # a project: its unit
    assert healthy.returncode == 0, healthy.stderr
    assert (
        healthy.stdout
        == "demo-app.service: healthy — demo-app.service stayed active (running) for 1.5s after the restart\n"
    )

    systemd_sandbox.write_unit("pm-dies.service", "[Service]\nExecStart=/bin/sh -c 'sleep 2; exit 3'\n")
    dying = pm(systemd_sandbox, config, "restart", "pm-dies", "--settle", "6", "--json")  # a unit: .service added
    assert dying.returncode == errors.VALIDATION_FAILED, dying.stderr
    report = json.loads(dying.stdout)
    assert (report["unit"], report["healthy"], report["active_state"], report["result"]) == (
        "pm-dies.service", False, "failed", "exit-code",
    )  # fmt: skip
    assert 1.5 < report["duration_s"] < 4  # said when it died, not after the whole settle time

    missing = pm(systemd_sandbox, config, "restart", "pm-missing.service")
    assert (missing.returncode, missing.stdout) == (errors.TOOL_FAILED, "")
    assert missing.stderr == "Error: systemd has no unit pm-missing.service\n"

    rows = query(root, "SELECT project, unit, outcome, active_state, result, finished_at >= requested_at FROM restarts")
    assert rows == [
        ("app", "demo-app.service", "healthy", "active", "success", 1),
        (None, "pm-dies.service", "unhealthy", "failed", "exit-code", 1),
        (None, "pm-missing.service", "error", None, None, 1),
    ]


def test_a_start_limited_unit_is_reset_and_comes_up_once_fixed(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, extra="[systemd_monitor]\nsettle = 1\n")
    fixed = root / "fixed"
    systemd_sandbox.write_unit(
        "pm-limited.service",
        f"[Service]\nExecStart=/bin/sh -c 'test -e {fixed} || exit 1; exec sleep infinity'\n"
        "Restart=on-failure\nRestartSec=100ms\n",
    )
    systemd_sandbox.systemctl("start", "pm-limited.service", check=False)

    def failed() -> bool:
        return systemd_sandbox.systemctl("is-failed", "--quiet", "pm-limited.service", check=False).returncode == 0

    wait_for("the start limit", failed)  # 5 starts in 10 s (the default), then systemd stops restarting it
    refused = systemd_sandbox.systemctl("restart", "pm-limited.service", check=False)  # what a plain restart gets
    journal = systemd_sandbox.run(["journalctl", "-u", "pm-limited.service", "-o", "cat"]).stdout
    assert refused.returncode == 1 and journal.count("Start request repeated too quickly") == 2, journal

    fixed.touch()
    restarted = pm(systemd_sandbox, config, "restart", "pm-limited")
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.startswith("pm-limited.service: healthy — pm-limited.service stayed active (running)")
    assert systemd_sandbox.systemctl("is-active", "pm-limited.service").stdout.strip() == "active"
    systemd_sandbox.systemctl("stop", "pm-limited.service")


def test_a_patch_that_crashes_the_service_is_reverted_pushed_and_the_service_recovers(
    systemd_sandbox: SystemdSandbox, root: Path
) -> None:
    config = make_project(root, fixer="crash", extra="[systemd_monitor]\nenabled = true\nsettle = 2\n")
    repo, remote = root / "demo-app", root / "remote.git"
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    systemd_sandbox.systemctl("start", "demo-app.service")
    # A watch runs meanwhile: the crash the run's own restart causes is the run's to handle, not a new heal.
    systemd_sandbox.run(["systemd-run", "--unit=pm-test-watch", f"--working-directory={REPO}",
                         PY, "-m", "pimainteno", "--config", str(config), "watch"])  # fmt: skip
    wait_for(
        "the watch", lambda: query(root, "SELECT 1 FROM status WHERE key = 'systemd.status' AND value = 'listening'")
    )
    before = git(repo, "rev-parse", "HEAD").strip()

    result = pm(systemd_sandbox, config, "run", "app")
    systemd_sandbox.systemctl("stop", "pm-test-watch.service")
    assert result.returncode == errors.VALIDATION_FAILED, result.stderr
    assert result.stdout.startswith("app: rolled_back — run #1 — proposal #1 — commit ")
    assert "demo-app.service was unhealthy after the restart" in result.stdout

    (patch_sha, patch_kind, reverted_by, patch_pushed), (revert_sha, revert_kind, _, revert_pushed) = query(
        root, "SELECT sha, kind, reverted_by, pushed_at IS NOT NULL FROM commits ORDER BY id"
    )
    assert (patch_kind, revert_kind, reverted_by, patch_pushed, revert_pushed) == ("patch", "revert", revert_sha, 1, 1)
    assert git(remote, "rev-parse", "main").strip() == revert_sha == git(repo, "rev-parse", "HEAD").strip()
    assert git(remote, "rev-list", "--reverse", f"{before}..main").split() == [patch_sha, revert_sha]
    assert git(repo, "diff", before, revert_sha) == ""  # back to what ran before, by a new commit (never forced)
    message = git(repo, "log", "-1", "--format=%an <%ae>%n%B", revert_sha)
    assert message.splitlines()[1] == f'Revert "{git(repo, "log", "-1", "--format=%s", patch_sha).strip()}"'
    assert f"This reverts commit {patch_sha}." in message and "demo-app.service was unhealthy" in message
    assert message.startswith("pimainteno <pimainteno@")

    (status, steps), = query(root, "SELECT status, steps FROM runs")  # fmt: skip
    assert status == "rolled_back"
    outcomes = [(s["step"], s["outcome"]) for s in json.loads(steps)]
    assert outcomes[-5:] == [("push", "ok"), ("restart", "unhealthy"), ("rollback", "ok"), ("push-revert", "ok"),
                             ("restart-after-rollback", "ok")]  # fmt: skip
    assert query(root, "SELECT outcome, run_id FROM restarts ORDER BY id") == [("unhealthy", 1), ("healthy", 1)]
    assert query(root, "SELECT status FROM proposals") == [("rolled_back",)]
    assert systemd_sandbox.systemctl("is-active", "demo-app.service").stdout.strip() == "active"
    # the crash was seen, attributed to the run, and no heal was queued for it
    assert query(root, "SELECT unit, heal, run_id FROM failures") == [("demo-app.service", "run", 1)]
    assert not (root / "state" / "queue").is_dir() or not list((root / "state" / "queue").glob("*.json"))


def test_no_restart_when_systemd_does_not_know_the_unit(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, unit="pm-absent.service")
    result = pm(systemd_sandbox, config, "run", "app")
    assert result.returncode == 0, result.stderr
    assert "not restarting: systemd has no unit pm-absent.service" in result.stderr
    (steps,) = query(root, "SELECT steps FROM runs WHERE status = 'ok'")[0]
    last = json.loads(steps)[-1]
    assert (last["step"], last["outcome"], last["detail"]) == (
        "restart",
        "skipped",
        "systemd has no unit pm-absent.service",
    )
    assert query(root, "SELECT count(*) FROM restarts") == [(0,)]
