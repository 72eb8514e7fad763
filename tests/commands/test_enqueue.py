"""`enqueue`: a request becomes one trigger file, without the database; errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pimainteno import errors, queue
from pimainteno.queue import parse_trigger
from tests.conftest import make_repo, run_cli, write_config


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


@pytest.mark.parametrize(("args", "said"), [(["--proposal", "4"], "queued an apply"), ([], "queued a run"),
                                            (["--kind", "reject", "--proposal", "4"], "queued a reject")])  # fmt: skip
def test_enqueue_says_what_it_queued_in_english(tmp_path: Path, args: list[str], said: str) -> None:
    configure(tmp_path)
    result = run_cli("enqueue", "app", *args)
    assert result.returncode == 0 and f"app: {said} (" in result.stderr, result.stderr
