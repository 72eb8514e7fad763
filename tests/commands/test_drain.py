"""`drain`: ordered consumption, malformed files moved aside, concurrent drains, killed drains retried.

The queue mechanics are tested with the action injected (drain(app, action=...)); running the real
chain from the queue is tested end to end in test_hooks.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pimainteno import db as dbm
from pimainteno import errors, queue, records
from pimainteno.app import App
from pimainteno.commands.drain import GUARD, Outcome, drain
from pimainteno.queue import Trigger, enqueue
from tests.conftest import REPO_ROOT, make_repo, next_millisecond, run_cli, wait_until, write_config

NAMES = [f"p{i:02d}" for i in range(30)]


@pytest.fixture
def app(tmp_path: Path) -> App:
    # Drain checks that a trigger's project is configured; the chain itself is injected here.
    write_config(tmp_path, "".join(f"[[project]]\nname = '{n}'\npath = '{tmp_path / n}'\n" for n in NAMES))
    return App()


def qdir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "queue"


def top(q: Path) -> list[str]:
    return sorted(p.name for p in q.iterdir())


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, app: App, t: Trigger) -> Outcome:
        assert os.environ[GUARD] == "1"  # git run from here must not queue more runs through the hook
        self.seen.append((t.project, t.kind, t.source))
        return Outcome("ok", run_id=100 + len(self.seen))


def triggers(app: App) -> list[dict[str, Any]]:
    cur = app.db.execute("SELECT * FROM triggers ORDER BY id")
    return [dict(zip([c[0] for c in cur.description], r, strict=True)) for r in cur.fetchall()]


def test_consumes_oldest_first_and_records_each(app: App, tmp_path: Path) -> None:
    q = qdir(tmp_path)
    for name, source in [("p02", "timer"), ("p00", "hook"), ("p01", "dashboard")]:
        enqueue(q, name, source=source, reason=f"for {name}")
        next_millisecond()
    enqueue(q, "p00", kind="heal", failure_id=9, source="watch")
    action = Recorder()
    consumed = drain(app, action=action)
    assert action.seen == [("p02", "run", "timer"), ("p00", "run", "hook"), ("p01", "run", "dashboard"),
                           ("p00", "heal", "watch")]  # fmt: skip
    rows = triggers(app)
    assert [(r["project"], r["kind"], r["source"], r["run_id"], r["status"], r["detail"]) for r in rows] == [
        ("p02", "run", "timer", 101, "done", "ok"),
        ("p00", "run", "hook", 102, "done", "ok"),
        ("p01", "run", "dashboard", 103, "done", "ok"),
        ("p00", "heal", "watch", 104, "done", "ok"),
    ]
    assert rows[3]["failure_id"] == 9 and rows[0]["reason"] == "for p02" and rows[0]["file"] == "p02.run.json"
    assert all(r["requested_at"] < r["consumed_at"] for r in rows)
    assert [r["id"] for r in consumed] == [r["id"] for r in rows]
    assert top(q) == [".claimed"] and top(q / ".claimed") == []  # nothing pending, no claim left
    assert GUARD not in os.environ
    assert (
        records.get_status(app.db)["drain.status"]["value"]
        == "drained the queue; 4 trigger(s) consumed in the last pass"
    )
    assert drain(app, action=action) == []


def test_triggers_queued_while_draining_are_consumed_too(app: App, tmp_path: Path) -> None:
    q = qdir(tmp_path)
    enqueue(q, "p00")
    seen: list[str] = []

    def action(app: App, t: Trigger) -> Outcome:
        seen.append(t.project)
        if seen == ["p00"]:
            enqueue(q, "p01")
            next_millisecond()
            enqueue(q, "p00")  # asked again while running: runs again afterwards
        return Outcome("nothing")

    drain(app, action=action)
    assert seen == ["p00", "p01", "p00"]


def test_malformed_and_unknown_files_are_moved_aside_and_do_not_stop_the_drain(app: App, tmp_path: Path) -> None:
    q = qdir(tmp_path)
    enqueue(q, "p00")
    (q / "broken.json").write_text('{"project": "p01", "kind": "nap"}')
    (q / "garbage.json").write_bytes(b"\x00\x01")
    (q / "notes.txt").write_text("hello")
    (q / "a-directory").mkdir()
    (q / "gone.run.json").write_bytes(Trigger("gone", requested_at=queue.now(), id="x").to_json())
    action = Recorder()
    drain(app, action=action)
    assert action.seen == [("p00", "run", "cli")]
    assert top(q) == [".claimed", ".rejected"]
    aside = {p.name.split("Z-", 1)[1]: p for p in (q / ".rejected").iterdir()}
    assert sorted(aside) == sorted(
        ["broken.json", "broken.json.reason", "garbage.json", "garbage.json.reason", "notes.txt", "notes.txt.reason",
         "a-directory", "a-directory.reason", "gone.run.json", "gone.run.json.reason"]
    )  # fmt: skip
    assert aside["broken.json.reason"].read_text() == "kind: expected one of run, heal, apply, reject, got 'nap'\n"
    assert aside["notes.txt.reason"].read_text() == "not a trigger file (a regular *.json file)\n"
    assert aside["gone.run.json.reason"].read_text() == (
        "unknown project 'gone' (known: " + ", ".join(NAMES) + "); queue it again under the configuration that has it\n"
    )
    assert aside["garbage.json"].read_bytes() == b"\x00\x01"  # kept as it was, for a look
    rows = {r["file"]: r for r in triggers(app)}
    assert rows["broken.json"]["status"] == "malformed" and rows["broken.json"]["project"] == "p01"
    assert rows["gone.run.json"]["project"] == "gone" and rows["gone.run.json"]["status"] == "unknown-project"
    assert rows["p00.run.json"]["status"] == "done"
    assert len(rows) == 6


def test_a_failing_action_is_recorded_and_the_drain_goes_on(app: App, tmp_path: Path) -> None:
    q = qdir(tmp_path)
    for name in ("p00", "p01", "p02", "p03"):
        enqueue(q, name)
        next_millisecond()

    def action(app: App, t: Trigger) -> Outcome:
        if t.project == "p00":
            raise errors.ToolError("git is not installed")
        if t.project == "p01":
            raise RuntimeError("a bug")
        if t.project == "p02":
            return Outcome("failed", run_id=7, error="the tests failed")
        return Outcome("rolled_back", run_id=8)

    drain(app, action=action)
    assert [(r["project"], r["status"], r["run_id"], r["detail"]) for r in triggers(app)] == [
        ("p00", "failed", None, "git is not installed"),
        ("p01", "failed", None, "unexpected RuntimeError: a bug"),
        ("p02", "failed", 7, "failed: the tests failed"),
        ("p03", "done", 8, "rolled_back"),
    ]
    assert not list(q.glob("*.json"))


def add_proposal(app: App, project: str, status: str) -> int:
    with dbm.transaction(app.db):
        return records.insert(app.db, "proposals", {
            "project": project, "created_at": records.now(), "status": status, "diff": "--- a/x\n+++ b/x\n",
        })  # fmt: skip


def test_reject_marks_a_waiting_proposal_rejected_by_the_user(app: App, tmp_path: Path) -> None:
    waiting, landed = add_proposal(app, "p00", "proposed"), add_proposal(app, "p00", "committed")
    q = qdir(tmp_path)
    for proposal in (waiting, landed, 999):
        enqueue(q, "p00", kind="reject", proposal_id=proposal, source="dashboard")
        next_millisecond()
    drain(app)  # the real dispatch: a reject is a database write, no run
    status = dict(app.db.execute("SELECT id, status || ' / ' || coalesce(status_reason, '') FROM proposals").fetchall())
    assert status == {waiting: "rejected / rejected on the dashboard", landed: "committed / "}
    assert [(r["kind"], r["proposal_id"], r["status"], r["detail"]) for r in triggers(app)] == [
        ("reject", waiting, "done", "rejected"),
        ("reject", landed, "failed", f"failed: proposal #{landed} is committed; not rejecting it"),
        ("reject", 999, "failed", "failed: no proposal #999 for p00"),
    ]


DRAIN_SCRIPT = """
import os, sys, time
from pimainteno.app import App
from pimainteno.commands.drain import Outcome, drain

log, pause = sys.argv[1], float(sys.argv[2])

def action(app, t):
    with open(log, "a") as f:
        f.write(f"{t.project} {os.getpid()}\\n")
    time.sleep(pause)
    return Outcome("ok")

drain(App(), action=action)
"""


def start_drain(tmp_path: Path, log: Path, pause: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DRAIN_SCRIPT, str(log), str(pause)], cwd=REPO_ROOT, text=True, stderr=subprocess.PIPE
    )


def test_two_drains_at_once_never_run_a_trigger_twice(app: App, tmp_path: Path) -> None:
    q = qdir(tmp_path)
    for name in NAMES:
        enqueue(q, name)
    app.db  # noqa: B018 - create the database before both drains start
    log = tmp_path / "ran.log"
    drains = [start_drain(tmp_path, log, 0.03) for _ in range(2)]
    for d in drains:
        assert d.wait(timeout=120) == 0, d.stderr.read() if d.stderr else ""
    ran = [line.split() for line in log.read_text().splitlines()]
    assert sorted(project for project, _ in ran) == NAMES  # each exactly once
    assert {pid for _, pid in ran} == {str(d.pid) for d in drains}  # and both drains did work
    assert sorted(r["project"] for r in triggers(app)) == NAMES
    assert top(q) == [".claimed"] and top(q / ".claimed") == []


def test_a_killed_drains_trigger_is_run_by_the_next_drain(app: App, tmp_path: Path) -> None:
    q = qdir(tmp_path)
    enqueue(q, "p00")
    app.db  # noqa: B018
    log = tmp_path / "ran.log"
    victim = start_drain(tmp_path, log, 60)
    wait_until(lambda: log.exists() and log.read_text(), "the drain to start its action", timeout=60)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    [claim_dir] = (q / ".claimed").iterdir()
    assert claim_dir.name.startswith(f"{victim.pid}-")  # named with the drain's pid
    assert top(claim_dir) == [".lock", "p00.run.json"] and not list(q.glob("*.json"))
    enqueue(q, "p01")  # newer than the interrupted one

    action = Recorder()
    drain(app, action=action)
    assert action.seen == [("p00", "run", "cli"), ("p01", "run", "cli")]
    rows = triggers(app)
    assert rows[0]["detail"] == "ok (attempt 2; an earlier drain died running it)"
    assert top(q / ".claimed") == []
    assert drain(app, action=action) == []  # and only once


def test_a_trigger_that_keeps_killing_drains_is_moved_aside(app: App, tmp_path: Path) -> None:
    q = qdir(tmp_path)
    dead = q / ".claimed" / "4242-abcdef"
    dead.mkdir(parents=True)
    (dead / ".lock").touch()  # nobody holds it: that drain is gone
    (dead / "p00.run.json").write_bytes(Trigger("p00", requested_at=queue.now(), id="x", attempts=2).to_json())
    action = Recorder()
    drain(app, action=action)
    assert action.seen == []
    [row] = triggers(app)
    assert (row["status"], row["detail"]) == ("malformed", "a drain died while running it 3 times")
    assert not dead.exists() and len(list((q / ".rejected").glob("*-p00.run.json"))) == 1


def test_a_live_drains_claims_are_left_alone(app: App, tmp_path: Path) -> None:
    q = qdir(tmp_path)
    enqueue(q, "p00")
    other = queue.Claim(q)  # another drain, alive (this process holds its lock)
    assert other.take(q / "p00.run.json") is not None
    action = Recorder()
    drain(app, action=action)
    assert action.seen == [] and top(other.dir) == [".lock", "p00.run.json"]
    other.close()


def test_follow_keeps_draining_until_interrupted(tmp_path: Path) -> None:
    write_config(tmp_path, f"[[project]]\nname = 'app'\npath = '{tmp_path / 'app'}'\n")
    app = App()
    proposal = add_proposal(app, "app", "proposed")  # approved would be decided already: reject is refused
    follower = subprocess.Popen(
        [sys.executable, "-m", "pimainteno", "drain", "--follow", "--json"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        following = f"following the queue (pid {follower.pid})"  # idle first: its first pass found nothing
        wait_until(
            lambda: following in (records.status_value(app.db, "drain.status") or ""), "the follower's first pass"
        )
        enqueue(qdir(tmp_path), "app", kind="reject", proposal_id=proposal, source="dashboard")
        assert follower.stdout is not None
        record = json.loads(follower.stdout.readline())
        assert (record["kind"], record["status"], record["source"]) == ("reject", "done", "dashboard")
        assert app.db.execute("SELECT status FROM proposals WHERE id = ?", [proposal]).fetchone()[0] == "rejected"
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == errors.INTERRUPTED
    assert top(qdir(tmp_path) / ".claimed") == []


# --- the claim loop (queue.claimed) and the command's exit codes --------------------------------


def drain_app(tmp_path: Path, names: list[str]) -> Any:
    from pimainteno.app import App

    write_config(tmp_path, "".join(f"[[project]]\nname = '{n}'\npath = '{tmp_path / n}'\n" for n in names))
    return App()


def recorded(app: Any) -> list[tuple[Any, ...]]:
    return app.db.execute("SELECT project, kind, status, detail FROM triggers ORDER BY id").fetchall()


def test_a_poisoned_trigger_is_moved_aside_and_the_heal_behind_it_runs(tmp_path: Path) -> None:
    from pimainteno.commands.drain import Outcome, drain

    app = drain_app(tmp_path, ["app"])
    q = tmp_path / "state" / "queue"
    q.mkdir(parents=True)
    poison = {"format": 1, "project": "app", "kind": "apply", "source": "cli", "proposal_id": 99999999999999999999999,
              "requested_at": "2026-01-01T00:00:00.000Z", "id": "x", "requests": 1, "attempts": 0}  # fmt: skip
    (q / "app.apply-99999999999999999999999.json").write_text(json.dumps(poison))
    enqueue(q, "app", kind="heal", failure_id=3, source="watch")
    seen: list[Trigger] = []
    records = drain(app, action=lambda app, t: seen.append(t) or Outcome("ok", run_id=1))
    assert [(t.kind, t.failure_id) for t in seen] == [("heal", 3)]
    assert [(r["kind"], r["status"]) for r in records] == [("apply", "malformed"), ("heal", "done")]
    assert (
        recorded(app)[0][3] == "proposal_id: expected an id from 1 to 9223372036854775807, got 99999999999999999999999"
    )
    [aside] = [p for p in (q / ".rejected").iterdir() if not p.name.endswith(".reason")]
    assert json.loads(aside.read_text()) == poison  # kept as it was, for a look
    assert drain(app, action=lambda app, t: Outcome("ok")) == []  # and it blocks no later drain


def test_a_trigger_for_a_project_not_configured_here_is_moved_aside_as_unknown_not_malformed(tmp_path: Path) -> None:
    from pimainteno.commands.drain import UNKNOWN, Outcome, drain

    app = drain_app(tmp_path, ["app"])
    q = tmp_path / "state" / "queue"
    enqueue(q, "other", source="hook")
    next_millisecond()  # a later requested_at
    enqueue(q, "app")
    records = drain(app, action=lambda app, t: Outcome("ok"))
    assert [(r["project"], r["status"]) for r in records] == [("other", UNKNOWN), ("app", "done")]
    assert records[0]["detail"] == (
        "unknown project 'other' (known: app); queue it again under the configuration that has it"
    )
    assert [p.name.split("Z-", 1)[1] for p in sorted((q / ".rejected").iterdir())] == [
        "other.run.json", "other.run.json.reason"
    ]  # fmt: skip


def test_draining_reads_the_directory_a_few_times_not_once_per_trigger(tmp_path: Path, monkeypatch: Any) -> None:
    from pimainteno.commands.drain import Outcome, drain

    names = [f"p{i:03d}" for i in range(300)]
    app = drain_app(tmp_path, names)
    q = tmp_path / "state" / "queue"
    for n in names:
        enqueue(q, n)
    scans: list[int] = []
    real_scan = queue.scan
    monkeypatch.setattr(queue, "scan", lambda d: scans.append(1) or real_scan(d))  # counts, then the real scan
    late: list[str] = []

    def action(app: Any, t: Trigger) -> Outcome:
        if t.project == "p150" and not late:
            late.append(enqueue(q, "p000", reason="queued while draining")[0].name)
        return Outcome("ok")

    records = drain(app, action=action)
    assert [r["project"] for r in records] == [*names, "p000"]  # in order, and the late one too
    assert len(scans) <= 3


def test_drain_exits_4_after_a_failed_run_and_0_when_all_went_through(tmp_path: Path) -> None:
    import shutil

    write_config(tmp_path, f"[[project]]\npath = '{make_repo(tmp_path / 'app')}'\n")
    assert run_cli("enqueue", "app").returncode == 0
    shutil.rmtree(tmp_path / "app")  # the run cannot even start
    failed = run_cli("drain")
    assert failed.returncode == errors.TOOL_FAILED, failed.stderr
    assert "app: run from cli — failed" in failed.stderr
    empty = run_cli("drain")
    assert (empty.returncode, empty.stderr.strip()) == (0, "pimainteno: the queue is empty")
