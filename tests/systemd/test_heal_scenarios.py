"""Heals that never leave a service down (issue 18), each scenario on a real systemd (tests/sandbox.py).

The service is the demo project's serve.py; "broken" means a commit by its owner that makes it exit
at start with "settings file is missing", which the `command` provider's fixer removes when the
failure's journal is in its prompt (tests/systemd/project.py). Settle times are short to keep the
module quick.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pimainteno import queue
from tests.sandbox import REPO, SystemdSandbox
from tests.systemd.project import PY, git, make_project, pm, query, service_unit, service_workdir, wait_for

pytestmark = pytest.mark.systemd

FAST = "[systemd_monitor]\nsettle = 1\nrestart_timeout = 20\n"
BREAK = 'raise SystemExit("fatal: settings file is missing")  # BREAK\nwhile True:'


@pytest.fixture
def root(systemd_sandbox: SystemdSandbox) -> Iterator[Path]:
    with service_workdir(systemd_sandbox, "heal") as path:
        yield path


def active(sandbox: SystemdSandbox, unit: str = "demo-app.service") -> str:
    return sandbox.systemctl("is-active", unit, check=False).stdout.strip()


def break_service(root: Path) -> None:
    repo = root / "demo-app"
    (repo / "serve.py").write_text((repo / "serve.py").read_text().replace("while True:", BREAK))
    git(repo, "commit", "-qam", "Require a settings file")
    git(repo, "push", "-q", "origin", "HEAD:main")


def steps(root: Path, run_id: int) -> list[tuple[str, str]]:
    (raw,) = query(root, "SELECT steps FROM runs WHERE id = ?", (run_id,))[0]
    return [(s["step"], s["outcome"]) for s in json.loads(raw)]


def test_a_start_limited_unit_is_healed_and_left_active(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, extra=FAST)
    systemd_sandbox.write_unit("demo-app.service", service_unit(root) + "Restart=on-failure\nRestartSec=100ms\n")
    break_service(root)
    systemd_sandbox.systemctl("start", "demo-app.service", check=False)
    wait_for("the start limit", lambda: active(systemd_sandbox) == "failed")  # 5 starts in 10 s, then refused
    assert (
        "Start request repeated too quickly"
        in systemd_sandbox.run(["journalctl", "-u", "demo-app.service", "-o", "cat"]).stdout
    )

    recorded = pm(systemd_sandbox, config, "heal", "demo-app")
    assert "heal queued" in recorded.stdout + recorded.stderr, recorded.stderr
    drained = pm(systemd_sandbox, config, "drain")
    assert drained.returncode == 0, drained.stderr
    assert query(root, "SELECT status FROM runs") == [("ok",)]
    assert query(root, "SELECT outcome FROM restarts") == [("healthy",)]
    assert active(systemd_sandbox) == "active"
    systemd_sandbox.systemctl("stop", "demo-app.service")


def test_a_burst_of_failures_is_one_heal_and_the_healed_unit_is_not_restarted_again(
    systemd_sandbox: SystemdSandbox, root: Path
) -> None:
    config = make_project(root, extra=FAST)
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    break_service(root)
    for _ in range(3):  # three failures in a row: one row with a count, one queued heal
        systemd_sandbox.systemctl("restart", "demo-app.service", check=False)
        wait_for("the failure", lambda: active(systemd_sandbox) == "failed")
        assert pm(systemd_sandbox, config, "heal", "demo-app").returncode == 0
    assert query(root, "SELECT count, heal FROM failures") == [(3, "queued")]
    (failure_id,) = query(root, "SELECT id FROM failures")[0]
    assert len(list((root / "state" / "queue").glob("*.json"))) == 1

    assert pm(systemd_sandbox, config, "drain").returncode == 0
    assert active(systemd_sandbox) == "active"
    # The same burst's heal arriving once more (merged late, or from the OnFailure= path): nothing to do.
    queue.enqueue(root / "state" / "queue", "app", kind="heal", source="watch", failure_id=failure_id)
    second = pm(systemd_sandbox, config, "drain")
    assert second.returncode == 0, second.stderr
    runs = query(root, "SELECT id, status, error FROM runs ORDER BY id")
    assert [r[1] for r in runs] == ["ok", "nothing"]
    assert runs[1][2].startswith("already healthy: demo-app.service is active")
    assert query(root, "SELECT count(*) FROM restarts") == [(1,)]  # not restarted again
    assert query(root, "SELECT count(*) FROM llm_calls WHERE run_id = ?", (runs[1][0],)) == [(0,)]
    systemd_sandbox.systemctl("stop", "demo-app.service")


def test_a_refused_revert_push_still_restarts_the_unit(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, fixer="crash", extra=FAST)
    repo, remote = root / "demo-app", root / "remote.git"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do\n  git log -1 --format=%s $new | grep -q '^Revert' "
                    "&& { echo 'reverts need a review'; exit 1; }\ndone\nexit 0\n")  # fmt: skip
    hook.chmod(0o755)
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    systemd_sandbox.systemctl("start", "demo-app.service")

    result = pm(systemd_sandbox, config, "run", "app")
    assert result.stdout.startswith("app: rolled_back"), result.stderr
    assert "the revert is not pushed yet" in result.stdout
    assert steps(root, 1)[-3:] == [("rollback", "ok"), ("push-revert", "failed"), ("restart-after-rollback", "ok")]
    assert active(systemd_sandbox) == "active"  # the reverted checkout runs, pushed or not
    (push_error,) = query(root, "SELECT push_error FROM commits WHERE kind = 'revert'")[0]
    assert "reverts need a review" in push_error

    hook.unlink()  # the remote takes it now: the next run pushes the revert first
    pm(systemd_sandbox, config, "run", "app")
    assert steps(root, 2)[0] == ("push-pending", "ok")
    assert git(remote, "rev-parse", "main") == git(repo, "rev-parse", "HEAD")
    systemd_sandbox.systemctl("stop", "demo-app.service")


RACER = """\
import pathlib, subprocess, sys
root = pathlib.Path(sys.argv[0]).parent
clone = root / "colleague"
if not clone.exists():
    subprocess.run(["git", "clone", "-q", str(root / "remote.git"), str(clone)], check=True)
    where = clone / sys.argv[1]
    where.write_text(where.read_text().replace("while True:", "while True:  # keep serving")
                     if where.exists() else "a colleague's change\\n")
    who = ["-c", "user.name=Colleague", "-c", "user.email=c@example.com"]
    subprocess.run(["git", "-C", str(clone), "add", sys.argv[1]], check=True)
    subprocess.run(["git", "-C", str(clone), *who, "commit", "-qm", "Notes"], check=True)
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:main"], check=True)
serve = pathlib.Path("serve.py")
serve.write_text(serve.read_text().replace("while True:", 'raise SystemExit("crashing on start")\\nwhile True:'))
"""


def test_a_remote_that_moved_on_gets_pimaintenos_commits_replayed(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, fixer="NOTES", extra=FAST)
    (root / "fixer.py").write_text(RACER)  # a colleague pushes NOTES while the model works; the patch crashes
    repo, remote = root / "demo-app", root / "remote.git"
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    systemd_sandbox.systemctl("start", "demo-app.service")

    first = pm(systemd_sandbox, config, "run", "app")
    assert first.stdout.startswith("app: rolled_back"), first.stdout + first.stderr
    assert ("push", "failed") in steps(root, 1) and steps(root, 1)[-1] == ("restart-after-rollback", "ok")
    assert active(systemd_sandbox) == "active"

    second = pm(systemd_sandbox, config, "run", "app")  # replays the patch and its revert on the colleague's tip
    assert steps(root, 2)[0] == ("push-pending", "ok"), second.stderr
    assert ("propose", "ok") in steps(root, 2)
    subjects = git(remote, "log", "--reverse", "--format=%s", "main").splitlines()
    after = subjects[subjects.index("Notes") + 1 :]  # the colleague's commit, then run 1's two, replayed on it
    assert after[0].startswith("Apply") and after[1].startswith('Revert "Apply'), subjects
    assert git(remote, "rev-parse", "main") == git(repo, "rev-parse", "HEAD")
    assert query(root, "SELECT count(*) FROM commits WHERE pushed_at IS NULL") == [(0,)]
    assert query(root, "SELECT count(*) FROM status WHERE key = 'diverged.app'") == [(0,)]
    assert active(systemd_sandbox) == "active"
    systemd_sandbox.systemctl("stop", "demo-app.service")


def test_a_remote_that_moved_on_and_conflicts_wedges_nothing(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, fixer="serve.py", extra=FAST)
    (root / "fixer.py").write_text(RACER)  # the colleague edits the very line the patch touches
    repo, remote = root / "demo-app", root / "remote.git"
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    systemd_sandbox.systemctl("start", "demo-app.service")

    first = pm(systemd_sandbox, config, "run", "app")
    assert first.stdout.startswith("app: rolled_back"), first.stdout + first.stderr
    assert ("push", "failed") in steps(root, 1) and steps(root, 1)[-1] == ("restart-after-rollback", "ok")
    assert active(systemd_sandbox) == "active"

    # The same change was just rolled back: only --retry-known tries it again (the memory of failed fixes)
    second = pm(systemd_sandbox, config, "run", "app", "--retry-known")  # proposes, heals locally, pushes nothing
    assert steps(root, 2)[0] == ("push-pending", "skipped") and ("propose", "ok") in steps(root, 2), second.stderr
    assert ("push", "skipped") in steps(root, 2) and ("push-revert", "skipped") in steps(root, 2)
    (diverged,) = query(root, "SELECT value FROM status WHERE key = 'diverged.app'")[0]
    assert "moved on" in diverged
    assert "diverged" in pm(systemd_sandbox, config, "status").stdout
    assert git(remote, "log", "-1", "--format=%s", "main").strip() == "Notes"  # nothing forced over it
    assert active(systemd_sandbox) == "active"

    git(repo, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")  # the owner reconciles
    third = pm(systemd_sandbox, config, "run", "app")
    assert steps(root, 3)[0] == ("push-pending", "ok"), third.stderr
    assert query(root, "SELECT count(*) FROM status WHERE key = 'diverged.app'") == [(0,)]
    assert git(remote, "rev-parse", "main") == git(repo, "rev-parse", "HEAD")
    systemd_sandbox.systemctl("stop", "demo-app.service")


def start_drain(sandbox: SystemdSandbox, config: Path, unit: str) -> None:
    sandbox.run(["systemd-run", f"--unit={unit}", f"--working-directory={REPO}",
                 PY, "-m", "pimainteno", "--config", str(config), "drain"])  # fmt: skip


@pytest.mark.parametrize("where", ["settle", "push", "settle-sigterm"])
def test_a_drain_killed_mid_heal_is_finished_by_the_next_one(
    systemd_sandbox: SystemdSandbox, root: Path, where: str
) -> None:
    config = make_project(root, fixer="crash", extra="[systemd_monitor]\nsettle = 6\nrestart_timeout = 20\n")
    repo, remote = root / "demo-app", root / "remote.git"
    if where == "push":  # the remote takes its time, so the drain is killed while git push runs
        hook = remote / "hooks" / "pre-receive"
        hook.write_text(f"#!/bin/sh\ntouch {root / 'pushing'}\nsleep 3\nexit 0\n")
        hook.chmod(0o755)
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    systemd_sandbox.systemctl("start", "demo-app.service")
    before = git(repo, "rev-parse", "HEAD").strip()
    queue.enqueue(root / "state" / "queue", "app", source="timer")
    start_drain(systemd_sandbox, config, f"pm-drain-{where}")
    if where.startswith("settle"):
        wait_for("the restart", lambda: query(root, "SELECT 1 FROM restarts WHERE outcome IS NULL"), timeout=60)
    else:
        wait_for("the push", lambda: (root / "pushing").exists(), timeout=60)
    sig = "TERM" if where.endswith("sigterm") else "KILL"
    systemd_sandbox.systemctl("kill", "--kill-whom=main", "-s", sig, f"pm-drain-{where}.service")
    wait_for("the drain to die", lambda: active(systemd_sandbox, f"pm-drain-{where}.service") != "active")
    (remote / "hooks" / "pre-receive").unlink(missing_ok=True)

    again = pm(systemd_sandbox, config, "drain")
    assert again.returncode == 0, again.stderr
    assert active(systemd_sandbox) == "active"
    (patch_sha, reverted_by), = query(root, "SELECT sha, reverted_by FROM commits WHERE kind = 'patch'")  # fmt: skip
    assert reverted_by is not None
    tip = git(remote, "rev-parse", "main").strip()
    assert tip == git(repo, "rev-parse", "HEAD").strip() == reverted_by
    assert git(repo, "diff", before, tip) == ""  # the remote has the bad commit only with its revert
    assert query(root, "SELECT count(*) FROM restarts WHERE outcome IS NULL") == [(0,)]
    # no restart is still announced (an ended one only dates failures the watcher sees late) and none is owed
    left = "(key LIKE 'restarting.%' AND value NOT LIKE '%\"ended\": true%') OR key LIKE 'restart-owed.%'"
    assert query(root, f"SELECT count(*) FROM status WHERE {left}") == [(0,)]
    systemd_sandbox.systemctl("stop", "demo-app.service")


def test_a_heal_that_finds_the_project_locked_runs_later(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, extra=FAST)
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    break_service(root)
    systemd_sandbox.systemctl("start", "demo-app.service", check=False)
    wait_for("the failure", lambda: active(systemd_sandbox) == "failed")
    assert pm(systemd_sandbox, config, "heal", "demo-app").returncode == 0
    locks = root / "state" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / "app.lock", "a") as held:  # another run holds the project
        fcntl.flock(held, fcntl.LOCK_EX)
        start_drain(systemd_sandbox, config, "pm-drain-locked")
        said = ["journalctl", "-u", "pm-drain-locked.service", "-o", "cat"]
        wait_for("the drain meeting the lock", lambda: "locked by another run" in systemd_sandbox.run(said).stdout,
                 every=0.3)  # fmt: skip
        assert query(root, "SELECT count(*) FROM triggers") == [(0,)]  # nothing consumed while it waits
        assert query(root, "SELECT heal FROM failures") == [("queued",)]
    wait_for("the heal", lambda: query(root, "SELECT status FROM triggers") == [("done",)], timeout=60)
    assert query(root, "SELECT status FROM runs") == [("ok",)]
    assert active(systemd_sandbox) == "active"
    systemd_sandbox.systemctl("stop", "demo-app.service")


WATCHED = '[systemd_monitor]\nunits = ["pm-flaky.service"]\ncoalesce = 0\n'


def fail_flaky(sandbox: SystemdSandbox) -> None:
    sandbox.systemctl("start", "pm-flaky.service", check=False)


def test_watch_survives_a_locked_and_a_deleted_database(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    config = make_project(root, extra=WATCHED)
    systemd_sandbox.write_unit("pm-flaky.service", "[Service]\nExecStart=/bin/sh -c 'echo flaky; exit 3'\n")
    systemd_sandbox.run(["systemd-run", "--unit=pm-watch-db", f"--working-directory={REPO}",
                         PY, "-m", "pimainteno", "--config", str(config), "watch"])  # fmt: skip
    wait_for(
        "the watch", lambda: query(root, "SELECT 1 FROM status WHERE key = 'systemd.status' AND value = 'listening'")
    )
    path = root / "state" / "pimainteno.db"
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # held until the watch gives up waiting (the 15 s busy timeout)
    fail_flaky(systemd_sandbox)

    def journal() -> str:
        return systemd_sandbox.run(["journalctl", "-u", "pm-watch-db.service", "-o", "cat"]).stdout

    wait_for("the watch meeting the lock", lambda: "cannot record failures now" in journal(), timeout=60, every=0.5)
    assert query(root, "SELECT count(*) FROM failures") == [(0,)]  # kept in memory, not lost, not yet written
    locker.execute("ROLLBACK")
    locker.close()
    wait_for("the failure recorded after the lock", lambda: query(root, "SELECT count(*) FROM failures") == [(1,)],
             timeout=60)  # fmt: skip
    assert active(systemd_sandbox, "pm-watch-db.service") == "active"

    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    fail_flaky(systemd_sandbox)
    wait_for("the failure in a new database", lambda: query(root, "SELECT unit FROM failures") == [("pm-flaky.service",)],
             timeout=30)  # fmt: skip
    assert active(systemd_sandbox, "pm-watch-db.service") == "active"
    systemd_sandbox.systemctl("stop", "pm-watch-db.service")


def test_a_crash_loop_is_a_bounded_number_of_rows(systemd_sandbox: SystemdSandbox, root: Path) -> None:
    """A unit restarted by systemd every 100 ms for 8 s (a scaled 60 s loop): one row with a count."""
    config = make_project(root, extra='[systemd_monitor]\nunits = ["pm-loop.service"]\ncoalesce = 60\n')
    systemd_sandbox.write_unit(
        "pm-loop.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sh -c 'echo looping; exit 1'\n"
        "Restart=always\nRestartSec=100ms\n",
    )
    systemd_sandbox.run(["systemd-run", "--unit=pm-watch-loop", f"--working-directory={REPO}",
                         PY, "-m", "pimainteno", "--config", str(config), "watch"])  # fmt: skip
    wait_for(
        "the watch", lambda: query(root, "SELECT 1 FROM status WHERE key = 'systemd.status' AND value = 'listening'")
    )
    systemd_sandbox.systemctl("start", "pm-loop.service", check=False)
    time.sleep(8)
    systemd_sandbox.systemctl("stop", "pm-loop.service", "pm-watch-loop.service")
    rows = query(root, "SELECT count, last_at > detected_at FROM failures WHERE unit = 'pm-loop.service'")
    assert len(rows) == 1 and rows[0][0] > 10 and rows[0][1] == 1, rows  # seen often, kept once


def test_after_a_rolled_back_heal_the_same_failure_is_held_and_a_different_one_healed(
    systemd_sandbox: SystemdSandbox, root: Path
) -> None:
    config = make_project(root, fixer="crash", extra=FAST)
    repo = root / "demo-app"
    systemd_sandbox.write_unit("demo-app.service", service_unit(root))
    break_service(root)

    def fail_and_record() -> dict[str, object]:
        systemd_sandbox.systemctl("restart", "demo-app.service", check=False)
        wait_for("the failure", lambda: active(systemd_sandbox) == "failed")
        result = pm(systemd_sandbox, config, "heal", "demo-app", "--json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    assert fail_and_record()["heal"] == "queued"
    assert pm(systemd_sandbox, config, "drain").returncode == 0
    assert query(root, "SELECT status FROM runs") == [("rolled_back",)]  # the patch crashed it: reverted

    held = fail_and_record()  # the same failure: no second patch and revert for it
    assert held["heal"] == "held" and "was rolled back by run #1" in str(held["detail"]), (
        held,
        query(root, "SELECT id, failure_id, status, finished_at FROM runs"),
        query(root, "SELECT id, journal FROM failures"),
    )
    assert not list((root / "state" / "queue").glob("*.json"))

    serve = (repo / "serve.py").read_text().replace("settings file is missing", "the port is taken")
    (repo / "serve.py").write_text(serve)
    git(repo, "commit", "-qam", "Another way to fail")
    assert fail_and_record()["heal"] == "queued"  # it fails differently: healed again
