"""The dashboard in a real headless Chromium: log in with the root link, press "Run now", drain, see the run.

Everything is real: `pimainteno demo` makes the database (summary, proposal, commit, run), a
`pimainteno dashboard` process serves it, Debian's /usr/bin/chromium (driven by Playwright) clicks,
and `pimainteno drain` runs the queued trigger.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pimainteno import config, db, records
from tests.conftest import REPO_ROOT, run_cli
from tests.dashboard.process import running_dashboard

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


def test_run_now_in_chromium_queues_a_run_that_drain_executes(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    demo = run_cli("demo", str(tmp_path / "demo"))
    assert demo.returncode == 0, demo.stderr
    config_path = tmp_path / "demo" / "PiMainteno.toml"
    cfg = config.load(config_path)
    d = db.open_db(cfg.database)  # a unit failure, recorded as `watch` records one
    records.insert(d, "failures", {"project": "demo-app", "unit": "demo-app.service", "detected_at": records.now(),
                              "result": "exit-code", "exit_status": 1, "source": "watch", "heal": "none",
                              "journal": "demo-app.service: Main process exited, status=1/FAILURE\n<b>not bold</b>"})  # fmt: skip
    d.conn.close()

    with running_dashboard(config_path) as running:
        url, login = running.url, running.login
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=FLAGS, headless=True
            )
            try:
                page = browser.new_page()
                page.goto(url)
                project = page.locator("#project-demo-app")
                expect(project.locator("h2")).to_have_text("demo-app")
                expect(project.locator(".pim-summary")).to_contain_text("A tiny temperature converter")
                expect(project.locator(".pim-diff .pim-del").first).to_contain_text("-import os")
                expect(project.locator(".pim-failure")).to_contain_text("<b>not bold</b>")  # shown, not interpreted
                expect(project.locator("#run-1")).to_contain_text("ok")
                expect(project.get_by_role("button", name="Run now")).to_have_count(0)  # anonymous: no button

                page.goto(login)  # the one-time root link sets the actor cookie and comes back to /
                expect(page.locator(".actor")).to_contain_text("root")
                page.get_by_role("button", name="Run now").click()
                expect(page.locator(".message-info")).to_contain_text("Run for demo-app queued")
                expect(page.locator("#project-demo-app .pim-queued")).to_contain_text("Queued: run from dashboard")
                triggers = sorted(p.name for p in cfg.queue_dir.glob("*.json"))
                assert triggers == ["demo-app.run.json"]

                drained = run_cli("--config", str(config_path), "drain")
                assert drained.returncode == 0, drained.stderr
                assert list(cfg.queue_dir.glob("*.json")) == []

                page.reload()
                run = page.locator("#project-demo-app #run-2")
                expect(run).to_contain_text("dashboard")
                expect(page.locator("#project-demo-app .pim-queued")).to_have_count(0)
                expect(page.locator(".pim-queue-count")).to_have_text("0")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
            finally:
                browser.close()
    assert (ARTIFACTS / "dashboard-overview.png").stat().st_size > 10_000
