from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pimainteno import config, errors
from pimainteno.cli import cli
from tests.conftest import make_repo, run_cli, write_config

SEED = """
[llm]
provider = "codex"
api_key = "sk-test-secret"
model = "gpt-5-codex"
extra_args = ["--config", "model_reasoning_effort=\\"low\\""]

[cache]
path = "~/pimainteno-cache.db"

[scheduler]
enabled = true
schedule = "0 3 * * *"
projects = ["~/src/app", "~/src/api"]

[systemd_monitor]
enabled = true
units = ["app.service"]

[web]
host = "0.0.0.0"
port = 8080
"""


def test_seed_format_loads_unchanged(tmp_path: Path) -> None:
    cfg = config.load(write_config(tmp_path, SEED))
    home = Path(os.environ["HOME"])
    assert [p.name for p in cfg.projects] == ["app", "api"]
    app = cfg.project("app")
    assert app.path == home / "src" / "app"
    assert app.unit == "app.service"
    assert app.mode == "push" and app.remote == "origin"
    assert cfg.database == home / "pimainteno-cache.db"
    assert cfg.scheduler.schedule == "*-*-* 03:00:00"
    assert cfg.monitor.units == ("app.service",)
    assert (cfg.web.host, cfg.web.port) == ("0.0.0.0", 8080)
    assert cfg.llm.api_key == "sk-test-secret" and "sk-test" not in repr(cfg.llm)
    assert cfg.llm.extra_args == ("--config", 'model_reasoning_effort="low"')


def test_json_loads(tmp_path: Path) -> None:
    path = tmp_path / "PiMainteno.json"
    path.write_text(
        json.dumps(
            {
                "llm": {"provider": "command", "command": ["ruff", "check", "--fix", "."]},
                "project": [{"path": "app", "mode": "commit", "test": "pytest -q"}],
            }
        )
    )
    cfg = config.load(path)
    assert cfg.llm.command == ("ruff", "check", "--fix", ".")
    assert cfg.projects[0].path == tmp_path / "app"
    assert cfg.projects[0].mode == "commit" and cfg.projects[0].test == "pytest -q"


def test_example_config_at_top_loads() -> None:
    cfg = config.load(Path(__file__).parent.parent / "PiMainteno.toml")
    assert cfg.projects and cfg.scheduler.schedule == "*-*-* 03:00:00"


def test_project_tables_and_policy(tmp_path: Path) -> None:
    cfg = config.load(
        write_config(
            tmp_path,
            """
[policy]
max_files = 5
[[project]]
name = "web"
path = "/srv/web"
unit = "web"
[project.policy]
allow_exec = true
[[project]]
path = "/srv/api"
""",
        )
    )
    web, api = cfg.projects
    assert web.unit == "web.service" and web.policy.allow_exec and web.policy.max_files == 5
    assert api.name == "api" and api.unit == "api.service" and not api.policy.allow_exec


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 3 * * *", "*-*-* 03:00:00"),
        ("*/15 * * * *", "*-*-* *:00/15:00"),
        ("30 4 * * 1-5", "Mon..Fri *-*-* 04:30:00"),
        ("0 0 1 1,7 *", "*-01,07-01 00:00:00"),
        ("daily", "daily"),
        ("@weekly", "weekly"),
        ("Mon *-*-* 04:00", "Mon *-*-* 04:00"),
    ],
)
def test_schedule_normalised(cron: str, expected: str) -> None:
    assert config.normalise_schedule(cron) == expected


MALFORMED = {
    "bad toml": ("[llm\nprovider = 1", "invalid TOML"),
    "wrong type": ("[web]\nport = 'eighty'", "web.port: expected a port number from 1 to 65535, got 'eighty'"),
    "port range": ("[web]\nport = 70000", "web.port: expected a port number"),
    "unknown top key": ("colour = 'blue'", "unknown key 'colour'"),
    "unknown nested key": ("[llm]\nprovidr = 'codex'", "unknown key 'llm.providr'"),
    "bad provider": ("[llm]\nprovider = 'gpt'", "llm.provider: expected one of codex, command, got 'gpt'"),
    "empty project list": ("[scheduler]\nprojects = []", "scheduler.projects: expected at least one"),
    "projects not list": ("[scheduler]\nprojects = '/srv/app'", "scheduler.projects: expected a list of paths"),
    "bad schedule": ("[scheduler]\nschedule = '61 * * * *'", "scheduler.schedule: expected cron values"),
    "bad mode": ("[[project]]\npath = '/x'\nmode = 'yolo'", "project[0].mode: expected one of propose"),
    "project without path": ("[[project]]\nname = 'x'", "project[0].path: expected the path"),
    "duplicate names": ("[[project]]\npath = '/a/app'\n[[project]]\npath = '/b/app'", "'app' is configured twice"),
    "bad project name": ("[[project]]\npath = '/a'\nname = 'a b/c'", "project[0].name: expected letters"),
    "section not table": ("llm = 'codex'", "llm: expected a table"),
    "bad test command": ("[[project]]\npath = '/a'\ntest = 5", "project[0].test: expected a command"),
    "negative timeout": ("[llm]\ntimeout = -1", "llm.timeout: expected a number >= 1"),
    "bad author": ("[git]\nauthor = 'nobody'", "git.author: expected 'Name <email>'"),
    "summary outside": ("[[project]]\npath = '/a'\nsummary_file = '../x.md'", "summary_file: expected a file name"),
    "not utf8": (b"\xff\xfe[llm]", "not UTF-8"),
    "bool as int": ("[systemd_monitor]\nheal_limit = true", "heal_limit: expected an integer"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_config_is_one_line_error(tmp_path: Path, case: str) -> None:
    text, fragment = MALFORMED[case]
    path = tmp_path / "PiMainteno.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = CliRunner().invoke(cli, ["projects"], catch_exceptions=False)
    assert result.exit_code == errors.BAD_INPUT, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert str(path) in lines[0] and fragment in lines[0]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = run_cli("--config", str(tmp_path / "nope.toml"), "status")
    assert missing.returncode == errors.BAD_INPUT
    assert (
        missing.stderr.strip() == f"Error: {tmp_path / 'nope.toml'}: no such file; run `pimainteno init` to write one"
    )
    directory = run_cli("--config", str(tmp_path), "status")
    assert directory.returncode == errors.BAD_INPUT and "is a directory" in directory.stderr
    unreadable = tmp_path / "locked.toml"
    unreadable.write_text("[llm]\n")
    unreadable.chmod(0)
    if os.geteuid() != 0:  # root reads anything; the error path is covered by the directory case
        res = run_cli("--config", str(unreadable), "status")
        assert res.returncode == errors.BAD_INPUT and "cannot read it" in res.stderr
    for res in (missing, directory):
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_no_config_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIMAINTENO_CONFIG")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "search_path", lambda: [tmp_path / "PiMainteno.toml"])
    with pytest.raises(errors.ConfigError, match="no configuration found .* run `pimainteno init`"):
        config.load()


def test_search_order_prefers_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIMAINTENO_CONFIG")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "PiMainteno.toml").write_text("[web]\nport = 9000\n")
    xdg = Path(os.environ["HOME"]) / ".config" / "pimainteno"
    xdg.mkdir(parents=True)
    (xdg / "PiMainteno.toml").write_text("[web]\nport = 9001\n")
    assert config.load().web.port == 9000
    (tmp_path / "PiMainteno.toml").unlink()
    assert config.load().web.port == 9001


def test_project_path_problems_reported_per_project(tmp_path: Path) -> None:
    make_repo(tmp_path / "good")
    (tmp_path / "plain").mkdir()
    write_config(tmp_path, f"[scheduler]\nprojects = ['{tmp_path}/good', '{tmp_path}/plain', '{tmp_path}/gone']\n")
    result = CliRunner().invoke(cli, ["projects", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["good"]["problem"] is None
    assert "is not a git repository" in rows["plain"]["problem"]
    assert "does not exist" in rows["gone"]["problem"]
