"""The spool directory: atomic enqueue, merging, the file format, parsing, and the hook's fast path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pimainteno import errors, queue
from pimainteno.queue import MalformedTrigger, Trigger, enqueue, parse_trigger, pending
from tests.conftest import REPO_ROOT, next_millisecond


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
    next_millisecond()  # ties would go by name
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
