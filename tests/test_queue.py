"""The spool directory: atomic enqueue, merging, the file format, parsing, and the hook's fast path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pimainteno import errors, queue
from pimainteno.queue import MalformedTrigger, Trigger, enqueue, parse_trigger, pending
from tests.conftest import REPO_ROOT, make_repo, run_cli, write_config


def files(queue_dir: Path) -> list[str]:
    return sorted(p.name for p in queue_dir.iterdir())


def test_enqueue_writes_one_complete_private_file(tmp_path: Path) -> None:
    q = tmp_path / "state" / "queue"
    path, merged = enqueue(q, "app", source="timer", reason="nightly")
    assert (path, merged) == (q / "app.run.json", False)
    assert stat.S_IMODE(q.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert files(q) == ["app.run.json"]  # no temporary file left behind
    data = json.loads(path.read_text())
    assert data["format"] == 1 and len(data["id"]) == 16
    assert data["requested_at"].endswith("Z") and data["requested_at"].startswith("20")
    assert {k: data[k] for k in ("project", "kind", "source", "reason", "failure_id", "proposal_id")} == {
        "project": "app", "kind": "run", "source": "timer", "reason": "nightly", "failure_id": None, "proposal_id": None,
    }  # fmt: skip
    assert parse_trigger(path.read_bytes()) == Trigger(
        "app", "run", "timer", "nightly", None, None, data["requested_at"], data["id"], requests=1
    )


def test_a_second_request_is_merged_into_the_waiting_one(tmp_path: Path) -> None:
    q = tmp_path / "queue"
    first, _ = enqueue(q, "app", source="hook")
    before = parse_trigger(first.read_bytes())
    again, merged = enqueue(q, "app", source="dashboard", reason="button")
    after = parse_trigger(again.read_bytes())
    assert (again, merged) == (first, True)
    assert files(q) == ["app.run.json"]
    # It keeps its place in the queue and who asked first, and gains the new details.
    assert (after.requested_at, after.source, after.reason, after.requests) == (
        before.requested_at,
        "hook",
        "button",
        2,
    )
    enqueue(q, "app", reason="button")
    assert parse_trigger(first.read_bytes()).reason == "button"  # the same reason is not repeated
    enqueue(q, "app", reason="other")
    assert parse_trigger(first.read_bytes()).reason == "button; other"


def test_one_pending_trigger_per_project_and_kind_apply_per_proposal(tmp_path: Path) -> None:
    q = tmp_path / "queue"
    enqueue(q, "app")
    enqueue(q, "api")
    enqueue(q, "app", kind="heal", failure_id=3, source="watch")
    _, merged = enqueue(q, "app", kind="heal", failure_id=4, source="watch")
    enqueue(q, "app", kind="apply", proposal_id=7, source="dashboard")
    enqueue(q, "app", kind="apply", proposal_id=8, source="dashboard")
    enqueue(q, "app", kind="reject", proposal_id=9, source="dashboard")
    with pytest.raises(errors.InputError, match="proposal #8 already has an approval queued"):  # exclusive with apply-8
        enqueue(q, "app", kind="reject", proposal_id=8, source="dashboard")
    assert merged
    assert files(q) == [
        "api.run.json", "app.apply-7.json", "app.apply-8.json", "app.heal.json", "app.reject-9.json", "app.run.json",
    ]  # fmt: skip
    assert parse_trigger((q / "app.heal.json").read_bytes()).failure_id == 4  # heal the latest failure


def test_concurrent_enqueues_of_one_project_leave_one_file(tmp_path: Path) -> None:
    q = tmp_path / "queue"
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: enqueue(q, "app", source="hook"), range(64)))
    assert files(q) == ["app.run.json"]
    assert sum(not merged for _, merged in results) == 1
    assert 1 <= parse_trigger((q / "app.run.json").read_bytes()).requests <= 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"project": "../etc"}, "cannot queue: project: expected a project name, got '../etc'"),
        ({"kind": "deploy"}, "cannot queue: kind: expected one of run, heal, apply, reject, got 'deploy'"),
        (
            {"source": "cron"},
            "cannot queue: source: expected one of cli, hook, dashboard, timer, watch, on-failure, got 'cron'",
        ),
        ({"kind": "heal"}, "cannot queue: a heal needs failure_id"),
        ({"kind": "apply"}, "cannot queue: apply needs proposal_id"),
        (
            {"kind": "apply", "proposal_id": 0},
            "cannot queue: proposal_id: expected an id from 1 to 9223372036854775807, got 0",
        ),
        (
            {"kind": "heal", "failure_id": 2**63},
            "cannot queue: failure_id: expected an id from 1 to 9223372036854775807, got 9223372036854775808",
        ),
    ],
)
def test_bad_requests_are_refused_before_anything_is_written(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"project": "app", **kwargs}
    with pytest.raises(errors.InputError) as e:
        enqueue(tmp_path / "queue", args.pop("project"), **args)
    assert str(e.value) == message
    assert not (tmp_path / "queue").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"\xff\xfe", "not JSON: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"kind": "run"}', "no project"),
        (b'{"project": "app", "format": 2}', "format 2 is not 1 (written by another version?)"),
        (b'{"project": "app", "kind": "nap"}', "kind: expected one of run, heal, apply, reject, got 'nap'"),
        (b'{"project": "app", "failure_id": "3"}', "failure_id: expected an id from 1 to 9223372036854775807, got '3'"),
        (
            b'{"project": "app", "kind": "apply", "proposal_id": 99999999999999999999999}',
            "proposal_id: expected an id from 1 to 9223372036854775807, got 99999999999999999999999",
        ),
        (b'{"project": "app", "attempts": 1e400}', "attempts: expected a count, got inf"),
        (b'{"project": "app\\n"}', "project: expected a project name, got 'app\\n'"),
        (b'{"project": "app", "requests": -1}', "requests: expected a count, got -1"),
        (b'{"project": "app", "reason": ["x"]}', "reason: expected text, got ['x']"),
        (b" " * (queue.MAX_BYTES + 1), f"too large ({queue.MAX_BYTES + 1} bytes)"),
    ],
)
def test_parse_trigger_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(MalformedTrigger) as e:
        parse_trigger(data)
    assert str(e.value) == message


def test_parse_trigger_ignores_unknown_keys_and_fills_defaults() -> None:
    t = parse_trigger(b'{"project": "app", "future": true}')
    assert (t.project, t.kind, t.source, t.requests, t.attempts) == ("app", "run", "cli", 1, 0)


def test_pending_lists_well_formed_triggers_oldest_first(tmp_path: Path) -> None:
    q = tmp_path / "queue"
    enqueue(q, "zeta")
    time.sleep(0.005)  # timestamps have millisecond resolution; ties go by name
    enqueue(q, "alpha")
    (q / "broken.json").write_text("{")
    (q / ".in-progress.json.1.tmp").write_text("{")
    assert [t.project for t in pending(q)] == ["zeta", "alpha"]
    assert all(t.path == q / f"{t.project}.run.json" for t in pending(q))
    assert pending(tmp_path / "missing") == []


def test_a_merge_racing_a_claim_becomes_a_new_trigger(tmp_path: Path) -> None:
    """A drain taking the file between the check and the merge: the request is queued anew, not lost."""
    q = tmp_path / "queue"
    path, _ = enqueue(q, "app")
    claim = queue.Claim(q)
    assert claim.take(path) == claim.dir / "app.run.json"
    again, merged = enqueue(q, "app")
    assert (again, merged) == (path, False)
    assert parse_trigger(again.read_bytes()).id != parse_trigger((claim.dir / "app.run.json").read_bytes()).id
    assert claim.take(path) is not None and claim.take(path) is None  # a file is taken once


def configure(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "app")
    return write_config(tmp_path, f"[[project]]\npath = '{repo}'\n\n[database]\npath = '{tmp_path / 'no' / 'db'}'\n")


def test_enqueue_command_never_opens_the_database(tmp_path: Path) -> None:
    configure(tmp_path)
    result = run_cli("enqueue", "app", "--reason", "by hand", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "project": "app", "kind": "run", "file": str(tmp_path / "state" / "queue" / "app.run.json"), "merged": False,
    }  # fmt: skip
    assert not (tmp_path / "no").exists()
    again = run_cli("enqueue", "app", "--kind", "heal", "--failure", "5", "--source", "watch")
    assert again.returncode == 0 and "app: queued a heal" in again.stderr
    assert parse_trigger((tmp_path / "state" / "queue" / "app.heal.json").read_bytes()).source == "watch"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "Error: unknown project 'nope' (known: app)"),
        (["app", "--kind", "run", "--failure", "3"], "Error: --failure goes with --kind heal, not run"),
        (
            ["app", "--source", "cron"],
            "Error: cannot queue: source: expected one of cli, hook, dashboard, timer, watch, on-failure, got 'cron'",
        ),
        (["app", "--kind", "apply"], "Error: cannot queue: apply needs proposal_id"),
    ],
)
def test_enqueue_command_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    configure(tmp_path)
    result = run_cli("enqueue", *args)
    assert (result.returncode, result.stderr.strip()) == (errors.BAD_INPUT, message)


def test_enqueueing_imports_nothing_heavy(tmp_path: Path) -> None:
    """The dashboard's web process enqueues: no click, database or git layer comes with it."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom pimainteno import queue\n"
        f"queue.enqueue(Path({str(tmp_path / 'q')!r}), 'app', source='dashboard')\n"
        "heavy = {'click', 'sqlite_utils', 'sqlite3', 'plumbum', 'pimainteno.db', 'pimainteno.cli', 'pimainteno.config'}\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=os.environ)
    assert result.stdout.strip() == "[]", result.stderr
    assert pending(tmp_path / "q")[0].source == "dashboard"


def test_a_broken_file_under_the_pending_name_is_replaced(tmp_path: Path) -> None:
    q = tmp_path / "queue"
    q.mkdir()
    (q / "app.run.json").write_text("{half")
    path, merged = enqueue(q, "app", source="hook")
    assert not merged and parse_trigger(path.read_bytes()).source == "hook"


@pytest.mark.parametrize("option", [["--failure"], ["--proposal"], ["--kind", "reject", "--proposal"]])
@pytest.mark.parametrize("value", ["1e20", "99999999999999999999999", "9223372036854775808", "0", "-1"])
def test_id_options_out_of_sqlites_range_are_usage_errors(tmp_path: Path, option: list[str], value: str) -> None:
    configure(tmp_path)
    result = run_cli("enqueue", "app", *option, value)
    assert result.returncode == errors.USAGE, result.stderr
    assert f"Invalid value for '{option[-1]}'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "queue").exists() or not list((tmp_path / "state" / "queue").glob("*.json"))


def test_the_largest_id_sqlite_holds_is_accepted(tmp_path: Path) -> None:
    configure(tmp_path)
    result = run_cli("enqueue", "app", "--proposal", str(queue.MAX_ID), "--json")
    assert result.returncode == 0, result.stderr
    assert parse_trigger(Path(json.loads(result.stdout)["file"]).read_bytes()).proposal_id == queue.MAX_ID


# --- the drain's claim loop (queue.claimed) --------------------------------------------------


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
    time.sleep(0.005)  # a later requested_at
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

    configure(tmp_path)
    assert run_cli("enqueue", "app").returncode == 0
    shutil.rmtree(tmp_path / "app")  # the run cannot even start
    failed = run_cli("drain")
    assert failed.returncode == errors.TOOL_FAILED, failed.stderr
    assert "app: run from cli — failed" in failed.stderr
    empty = run_cli("drain")
    assert (empty.returncode, empty.stderr.strip()) == (0, "pimainteno: the queue is empty")


@pytest.mark.parametrize(("args", "said"), [(["--proposal", "4"], "queued an apply"), ([], "queued a run"),
                                            (["--kind", "reject", "--proposal", "4"], "queued a reject")])  # fmt: skip
def test_enqueue_says_what_it_queued_in_english(tmp_path: Path, args: list[str], said: str) -> None:
    configure(tmp_path)
    result = run_cli("enqueue", "app", *args)
    assert result.returncode == 0 and f"app: {said} (" in result.stderr, result.stderr


def test_every_id_option_of_every_command_uses_the_one_id_type() -> None:
    from pimainteno.cli import ROW_ID, cli

    ids = [(name, p.name) for name, cmd in cli.commands.items() for p in cmd.params if (p.name or "").endswith("_id")]
    assert ("apply", "proposal_id") in ids and ("run", "failure_id") in ids and len(ids) >= 5
    for name, param in ids:
        assert cli.commands[name].params[[p.name for p in cli.commands[name].params].index(param)].type is ROW_ID


@pytest.mark.parametrize(
    "args",
    [
        ["propose", "app", "--failure"],
        ["apply", "--proposal"],
        ["run", "app", "--failure"],
        ["enqueue", "app", "--failure"],
    ],
)
def test_huge_ids_are_usage_errors_in_every_command(tmp_path: Path, args: list[str]) -> None:
    from click.testing import CliRunner

    from pimainteno.cli import cli

    configure(tmp_path)
    for value in ("1e20", "99999999999999999999999"):
        result = CliRunner().invoke(cli, [*args, value])
        assert result.exit_code == errors.USAGE, result.output
        assert "Invalid value for" in result.output and "OverflowError" not in result.output
