"""The records layer: the proposal state machine (every allowed and refused move), scrubbing, mirrors."""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from pimainteno import db, records
from pimainteno.app import setup_logging
from pimainteno.config import from_dict
from pimainteno.errors import InputError
from pimainteno.records import ProposalStatus as S
from tests.conftest import make_repo

ALLOWED = sorted((a, b) for a, targets in records.TRANSITIONS.items() for b in targets)
REFUSED = sorted((a, b) for a, b in itertools.product(S, S) if b not in records.TRANSITIONS[a])
DIFF = "diff --git a/x.txt b/x.txt\n--- a/x.txt\n+++ b/x.txt\n@@ -1 +1 @@\n-old\n+new\n"


@pytest.fixture
def database(tmp_path: Path) -> db.sqlite_utils.Database:
    return db.open_db(tmp_path / "records.db")


def proposal_in(d: db.sqlite_utils.Database, status: S) -> int:
    """A proposal put straight into ``status`` (the way a migrated or older database may hold it)."""
    p = records.add_proposal(d, project="app", diff=DIFF, base_head="0" * 40, files=["x.txt"], added=1, removed=1,
                             fingerprint=None)  # fmt: skip
    d["proposals"].update(p.id, {"status": status.value})
    return p.id


def test_every_status_has_a_declared_set_of_next_statuses() -> None:
    assert set(records.TRANSITIONS) == set(S)
    assert {S.PROPOSED, S.APPROVED} == records.WAITING
    finals = {s for s, nxt in records.TRANSITIONS.items() if not nxt}
    assert finals == {S.REJECTED, S.STALE, S.FAILED, S.DISCARDED, S.ROLLED_BACK}


@pytest.mark.parametrize(("old", "new"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_allowed_transition_moves_and_records_actor_and_reason(database: db.sqlite_utils.Database, old: S,
                                                               new: S) -> None:  # fmt: skip
    pid = proposal_in(database, old)
    assert records.transition(database, pid, new, actor="dashboard:alice", reason="because", test_output="out") == old
    row = database["proposals"].get(pid)
    assert (row["status"], row["status_reason"], row["test_output"]) == (new.value, "because", "out")
    decided = new in (S.APPROVED, S.REJECTED, S.DISCARDED)
    assert (row["decided_by"] == "dashboard:alice") is decided and (row["decided_at"] is not None) is decided
    last = list(database["proposal_events"].rows_where("proposal_id = ?", [pid], order_by="id"))[-1]
    assert (last["from_status"], last["to_status"], last["actor"], last["reason"]) == (old, new, "dashboard:alice",
                                                                                       "because")  # fmt: skip


@pytest.mark.parametrize(("old", "new"), REFUSED, ids=[f"{a}->{b}" for a, b in REFUSED])
def test_refused_transition_changes_nothing_and_says_why_in_one_line(database: db.sqlite_utils.Database, old: S,
                                                                      new: S) -> None:  # fmt: skip
    pid = proposal_in(database, old)
    events = database["proposal_events"].count
    with pytest.raises(records.IllegalTransition) as e:
        records.transition(database, pid, new, actor="pimainteno")
    assert str(e.value).startswith(f"proposal #{pid} is {old} and cannot become {new} (it can become ")
    assert "\n" not in str(e.value) and e.value.exit_code == 3
    assert database["proposals"].get(pid)["status"] == old
    assert database["proposal_events"].count == events


def test_expect_refuses_when_the_proposal_moved_on(database: db.sqlite_utils.Database) -> None:
    pid = proposal_in(database, S.PROPOSED)
    records.transition(database, pid, S.APPROVED, actor="cli")
    with pytest.raises(records.IllegalTransition, match="is approved, not proposed; not marking it rejected"):
        records.transition(database, pid, S.REJECTED, actor="dashboard", expect=S.PROPOSED)


def test_unknown_proposal_is_one_line(database: db.sqlite_utils.Database) -> None:
    with pytest.raises(InputError, match="no proposal #42; see the proposals table"):
        records.transition(database, 42, S.APPROVED, actor="cli")


def test_new_proposal_has_its_first_event_and_git_patch_id_fingerprint(tmp_path: Path,
                                                                       database: db.sqlite_utils.Database) -> None:  # fmt: skip
    from pimainteno import git

    repo = make_repo(tmp_path / "app", {"x.txt": "old\n"})
    fingerprint = git.patch_id(repo, DIFF)
    assert fingerprint and len(fingerprint) == 40
    moved = DIFF.replace("@@ -1 +1 @@", "@@ -7 +7 @@")  # the same change elsewhere in the file
    assert git.patch_id(repo, moved) == fingerprint
    p = records.add_proposal(database, project="app", diff=DIFF, base_head="0" * 40, files=["x.txt"], added=1,
                             removed=1, fingerprint=fingerprint, provider="command", reason="asked")  # fmt: skip
    assert records.get_proposal(database, p.id) == p
    assert database["proposals"].get(p.id)["fingerprint"] == fingerprint
    assert [(e["from_status"], e["to_status"], e["actor"]) for e in database["proposal_events"].rows] == [
        (None, "proposed", "command")
    ]


def test_scrub_redacts_every_configured_secret_in_stored_rows_and_the_log(
    tmp_path: Path, database: db.sqlite_utils.Database, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(records.base, "_secrets", set())  # this test's secrets stay in this test
    monkeypatch.setenv("MY_KEY", "sk-from-the-environment")
    config = from_dict({"llm": {"api_key": "sk-in-the-file", "api_key_env": "MY_KEY"}, "web": {"token": "tok-web-1"}},
                       tmp_path / "PiMainteno.toml")  # fmt: skip
    records.remember_secrets(config)
    text = "auth sk-in-the-file failed; env sk-from-the-environment; bearer tok-web-1"
    assert records.scrub(text) == "auth [redacted] failed; env [redacted]; bearer [redacted]"
    run_id = records.start_run(database, "app", "cli")
    records.update_run(database, run_id, steps=[{"step": "propose", "detail": text}])
    records.finish_run(database, run_id, "failed", duration_s=1.0, error=text, proposal_id=None, commit_sha=None)
    row = database["runs"].get(run_id)
    assert "sk-" not in row["error"] + row["steps"] and "tok-web-1" not in row["error"] + row["steps"]
    records.set_status(database, "drain.status", text)
    assert records.status_value(database, "drain.status") == records.scrub(text)
    setup_logging(0)
    logging.getLogger("pimainteno").info("calling with %s", "sk-in-the-file")
    assert "calling with [redacted]" in capsys.readouterr().err


def test_projects_table_mirrors_the_configuration(tmp_path: Path, database: db.sqlite_utils.Database) -> None:
    a, b = make_repo(tmp_path / "a"), make_repo(tmp_path / "b")
    config = from_dict({"project": [{"path": str(a)}, {"path": str(b), "mode": "propose", "provider": "command"}]},
                       tmp_path / "PiMainteno.toml")  # fmt: skip
    records.sync_projects(database, config.projects, config.llm.provider)
    rows = {r["name"]: r for r in database["projects"].rows}
    assert set(rows) == {"a", "b"}
    assert (rows["b"]["mode"], rows["b"]["provider"], rows["a"]["provider"]) == ("propose", "command", "codex")
    stamp = rows["a"]["updated_at"]
    records.sync_projects(database, config.projects, config.llm.provider)  # unchanged: nothing written
    assert database["projects"].get("a")["updated_at"] == stamp
    records.sync_projects(database, [replace(config.projects[0], unit="web.service")], "codex")
    assert [(r["name"], r["unit"]) for r in database["projects"].rows] == [("a", "web.service")]


def test_now_is_the_one_utc_millisecond_stamp() -> None:
    stamp, earlier = records.now(), records.now(3600)
    assert stamp.endswith("Z") and stamp[10] == "T" and len(stamp) == 24
    assert earlier < stamp


def test_an_error_line_never_shows_a_configured_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from pimainteno.cli import cli

    monkeypatch.setattr(records.base, "_secrets", set())
    (tmp_path / "PiMainteno.toml").write_text('[llm]\napi_key = "sk-typed-as-a-project"\n')
    result = CliRunner().invoke(cli, ["summarize", "sk-typed-as-a-project"])
    assert result.exit_code == 3
    assert result.output.startswith("Error: unknown project '[redacted]'") and "sk-typed" not in result.output


def test_update_is_one_statement_that_stores_lists_as_json_and_refuses_a_missing_row(
    database: db.sqlite_utils.Database,
) -> None:
    run_id = records.start_run(database, "app", "cli")
    records.update_run(database, run_id, step="propose", steps=[{"step": "summarize", "detail": "é"}])
    row = database.execute("SELECT step, steps FROM runs WHERE id = ?", [run_id]).fetchone()
    assert row == ("propose", '[{"step": "summarize", "detail": "é"}]')  # what sqlite-utils stored before
    with pytest.raises(db.sqlite_utils.db.NotFoundError):
        records.update_run(database, run_id + 1, step="propose")
    with pytest.raises(db.sqlite_utils.db.NotFoundError):
        records.update_run(database, run_id + 1)
    with pytest.raises(ValueError, match="not a column"):
        records.update(database, "runs", run_id, {'step" = 1, "x': "y"})


def test_every_exported_name_resolves_lazily_and_is_the_one_the_type_checker_sees() -> None:
    import ast
    import subprocess
    import sys

    tree = ast.parse(Path(records.__file__).read_text())
    typed = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and (node.module or "").startswith("pimainteno.records.") for a in node.names}  # fmt: skip
    assert typed == set(records.__all__)
    code = (
        "import sys\nfrom pimainteno import records\n"
        "print(sorted(m for m in sys.modules if m.startswith('pimainteno.records.')))\n"
        "from pimainteno.records import now, ProposalStatus, start_run\n"
        "missing = [n for n in records.__all__ if getattr(records, n) is None]\n"
        "assert records.base.scrub is records.scrub\n"
        "print(missing, ProposalStatus.__module__, start_run.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    first, second = out.stdout.splitlines()
    assert first == "[]"  # importing the package imports no table module
    assert second == "[] pimainteno.records.proposals pimainteno.records.runs"
