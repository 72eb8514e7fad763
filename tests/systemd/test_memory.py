"""Memory of failed fixes on a real systemd (tests/sandbox.py): a change that crashed the service and
was rolled back is not pushed again by the next timer run, though HEAD moved and the model is asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pimainteno import errors
from tests.sandbox import SystemdSandbox
from tests.systemd.project import git, make_project, pm, query, service_unit, service_workdir

pytestmark = pytest.mark.systemd


@pytest.fixture
def root(systemd_sandbox: SystemdSandbox) -> Iterator[Path]:
    with service_workdir(systemd_sandbox, "memory") as path:
        yield path


def test_a_rolled_back_change_is_not_pushed_again_by_a_timer_run(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, fixer="crash", extra="[systemd_monitor]\nsettle = 2\n")
    repo, remote = root / "demo-app", root / "remote.git"
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    systemd_sandbox.systemctl("start", "demo-app.service")
    first = pm(systemd_sandbox, config, "run", "app", "--trigger", "timer")
    assert first.returncode == errors.VALIDATION_FAILED, first.stderr
    assert first.stdout.startswith("app: rolled_back — run #1 — proposal #1 — commit ")
    reverted = git(remote, "rev-parse", "main").strip()

    again = pm(systemd_sandbox, config, "run", "app", "--trigger", "timer")  # HEAD moved: the model is asked
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        "app: nothing — run #2 — proposal #2 — the same change was rolled back in run #1; not trying it again "
        "(ask with `pimainteno run --retry-known`)\n"
    )
    assert git(remote, "rev-parse", "main").strip() == reverted == git(repo, "rev-parse", "HEAD").strip()
    assert query(root, "SELECT status FROM proposals ORDER BY id") == [("rolled_back",), ("discarded",)]
    assert query(root, "SELECT count(*) FROM restarts WHERE run_id = 2") == [(0,)]
    assert systemd_sandbox.systemctl("is-active", "demo-app.service").stdout.strip() == "active"
