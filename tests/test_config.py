from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pimainteno import config, errors
from pimainteno.cli import cli
from pimainteno.config import docs, forms
from pimainteno.db import open_db
from tests.conftest import REPO_ROOT, make_repo, run_cli, write_config

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


def test_extra_protected_adds_to_the_global_and_the_project_policy(tmp_path: Path) -> None:
    text = "[policy]\nextra_protected = ['secrets/**']\n[[project]]\npath = '/srv/a'\n"
    text += "[project.policy]\nextra_protected = ['deploy/**']\n[[project]]\npath = '/srv/b'\n"
    a, b = config.load(write_config(tmp_path, text)).projects
    default = config.PatchPolicy().protected
    assert b.policy.protected == (*default, "secrets/**") and b.policy.extra_protected == ()
    assert a.policy.protected == (*default, "secrets/**", "deploy/**")


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
    "unknown nested key": ("[llm]\nprovidr = 'codex'", "unknown key 'llm.providr'; did you mean `provider`?"),
    "unknown project key": (
        "[[project]]\npath = '/a'\nretreis = 2",
        "unknown key 'project[0].retreis'; did you mean `retries`?",
    ),
    "llm provider": ("[llm]\nprovider = 'llm'", 'llm.provider: "llm" is not available; use codex or command'),
    "llm provider per project": ("[[project]]\npath = '/a'\nprovider = 'llm'", 'project[0].provider: "llm" is not'),
    "newline in a name": ("[[project]]\npath = '/a'\nname = \"demo\\n\"", "project[0].name: control character U+000A"),
    "alias and key": ("[cache]\npath = 'a.db'\n[database]\npath = 'b.db'", "give `database` or `cache`, not both"),
    "bad health": ("[[project]]\npath = '/a'\nhealth = 'tcp://host'", "project[0].health: expected a command, an http"),
    "unknown apprise scheme": (
        "[notify]\nurls = ['nosuchservice://tok']",
        "notify.urls: expected apprise URLs such as 'ntfy://topic'",
    ),
    "web url bracket": ("[web]\nurl = 'http://[::1'", "web.url: expected an http:// or https:// URL"),
    "notify url bracket": ("[notify]\nurls = ['json://[abc']", "notify.urls: expected apprise URLs"),
    "bad event": ("[notify]\nevents = ['pushed', 'exploded']", "notify.events[1]: expected one of pushed, rolled_back"),
    "bad sandbox": ("[[project]]\npath = '/a'\nsandbox = 'off'", "project[0].sandbox: expected true, false or a table"),
    "bad unproven": (
        "[[project]]\npath = '/a'\nunproven = 'yes'",
        "project[0].unproven: expected one of propose, push",
    ),
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


def test_every_key_is_documented_with_its_schema_default() -> None:
    """docs/configuration.md lists each key of each table with the default the schema declares."""
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    sections = re.split(r"^#{2,3} ", text, flags=re.M)
    heading = {"database": "`[database]`", "project": "`[[project]]`"}
    for table, key, default in docs.keys():  # noqa: SIM118 (a function, not a dict)
        body = next(s for s in sections if heading.get(table, f"`[{table}]`") in s.splitlines()[0])
        assert f"| `{key}` | {default} |" in body, (table, key, default)
    llm = {f.name: f for f in dataclasses.fields(config.LLMConfig)}
    assert docs.default_text(llm["timeout"]) == "`600`" and docs.default_text(llm["analytics"]) == "`false`"


def test_example_file_names_every_key() -> None:
    example = (REPO_ROOT / "PiMainteno.toml").read_text()
    for table, key, _ in docs.keys():  # noqa: SIM118 (a function, not a dict)
        if key in ("sandbox", "policy"):
            continue  # tables of their own: [project.sandbox], [policy]
        assert re.search(rf"^(# )?{key} = ", example, flags=re.M), (table, key)


def test_defaults_come_from_the_schema(tmp_path: Path) -> None:
    cfg = config.load(write_config(tmp_path, "[[project]]\npath = 'app'\n"))
    project = cfg.projects[0]
    for obj in (cfg.llm, cfg.monitor, cfg.web, cfg.git, cfg.notify, cfg.policy):
        for f in dataclasses.fields(obj):
            assert getattr(obj, f.name) == docs.default(f), (type(obj).__name__, f.name)
    derived = {"path", "name", "unit", "sandbox", "policy"}
    for f in dataclasses.fields(project):
        if f.name not in derived:
            assert getattr(project, f.name) == docs.default(f), f.name
    assert (project.name, project.unit, project.path) == ("app", "app.service", tmp_path / "app")
    assert project.sandbox == config.Sandbox(enabled=True, network=False, writable=())
    assert project.unproven == "propose" and project.health is None
    assert (project.health_timeout, project.health_passes, project.health_interval, project.health_failures) == (
        5.0, 1, 30.0, 3,
    )  # fmt: skip
    assert cfg.llm.analytics is False and cfg.web.url is None
    assert (cfg.monitor.coalesce, cfg.monitor.retention_days) == (60.0, 30.0)
    assert cfg.notify == config.NotifyConfig(urls=(), max_per_hour=20, timeout=10.0)
    assert cfg.notify.events == ("pushed", "rolled_back", "heal_gave_up", "failure", "proposal_waiting",
                                 "run_failed", "stale", "diverged")  # fmt: skip


def test_new_keys_load(tmp_path: Path) -> None:
    cfg = config.load(
        write_config(
            tmp_path,
            """
[llm]
analytics = true
[web]
url = "https://pi.example.net/dash"
[systemd_monitor]
coalesce = 5
retention_days = 7
[notify]
urls = ["json://127.0.0.1:9/hook"]
events = ["pushed", "stale"]
max_per_hour = 3
timeout = 2
[[project]]
path = "a"
sandbox = false
unproven = "push"
health = "https://127.0.0.1:8443/health"
health_passes = 2
[[project]]
path = "b"
sandbox = { network = true, writable = ["cache", "~/.cache/pip"] }
health = "tcp://127.0.0.1:5432"
[[project]]
path = "c"
health = "curl -fsS http://127.0.0.1/ >/dev/null"
""",
        )
    )
    a, b, c = cfg.projects
    assert cfg.llm.analytics and cfg.web.url == "https://pi.example.net/dash"
    assert (cfg.monitor.coalesce, cfg.monitor.retention_days) == (5.0, 7.0)
    assert cfg.notify.urls == ("json://127.0.0.1:9/hook",) and cfg.notify.events == ("pushed", "stale")
    assert (cfg.notify.max_per_hour, cfg.notify.timeout) == (3, 2.0)
    assert a.sandbox.enabled is False and a.unproven == "push" and a.health_passes == 2
    home = Path(os.environ["HOME"])
    assert b.sandbox == config.Sandbox(enabled=True, network=True, writable=(tmp_path / "cache", home / ".cache/pip"))
    assert b.health == "tcp://127.0.0.1:5432" and c.health.startswith("curl")


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[[project]]\npath = "/a"\nunit = "foo.service\\n"', "project[0].unit"),
        ('[state]\ndir = "/srv/state\\nExecStartPre=/bin/touch /tmp/x"', "state.dir"),
        ('[queue]\ndir = "/srv/q\\r"', "queue.dir"),
        ('[[project]]\npath = "/a"\ntest = ["pytest", "-q\\u0000"]', "project[0].test[1]"),
        ('[[project]]\npath = "/a"\nremote = "origin\\u0085"', "project[0].remote"),
        ('[systemd_monitor]\nunits = ["a.service", "b\\u001b.service"]', "systemd_monitor.units[1]"),
        ('[llm.options]\n"evil\\nkey" = 1', 'llm.options."evil\\nkey"'),
    ],
)
def test_control_characters_are_refused_with_the_key(tmp_path: Path, toml: str, key: str) -> None:
    path = write_config(tmp_path, toml)
    with pytest.raises(errors.ConfigError) as refused:
        config.load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: {key}") and "control character U+00" in message
    assert "\n" not in message and "\r" not in message


def test_control_characters_in_the_state_dir_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIMAINTENO_STATE_DIR", "/srv/state\nExecStartPre=/bin/touch /tmp/x")
    with pytest.raises(errors.ConfigError, match="PIMAINTENO_STATE_DIR: control character U[+]000A"):
        config.default_state_dir()


def test_names_and_units_match_whole_values() -> None:
    assert forms.name("demo") is None and forms.name("demo\n") is not None
    assert forms.unit("foo.service") is None and forms.unit("foo.service\n") is not None
    assert forms.unit("getty@tty1.service") is None and forms.unit("a b.service") is not None


@pytest.mark.parametrize(
    ("value", "inside"),
    [("cache-dir", True), ("~/.cache/pimainteno", True), ("db/state.sqlite", False), ("seed.db", False)],
)
def test_cache_path_naming_a_directory_holds_the_database(tmp_path: Path, value: str, inside: bool) -> None:
    (tmp_path / "cache-dir").mkdir()
    cfg = config.load(write_config(tmp_path, f"[cache]\npath = '{value}'\n"))
    given = Path(value.replace("~", os.environ["HOME"])) if value.startswith("~") else tmp_path / value
    assert cfg.database == (given / "pimainteno.db" if inside else given)


def test_seed_database_directory_works_end_to_end(tmp_path: Path) -> None:
    cache = Path(os.environ["HOME"]) / ".cache" / "pimainteno"
    cache.mkdir(parents=True)
    write_config(tmp_path, "[cache]\npath = '~/.cache/pimainteno'\n")
    result = CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["database"] == str(cache / "pimainteno.db")
    open_db(config.load().database).conn.close()  # the seed's directory now holds a working database
    assert (cache / "pimainteno.db").is_file()


def test_public_web_host_loads_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.load(write_config(tmp_path, "[web]\nhost = '0.0.0.0'\n"))
    assert cfg.web.host == "0.0.0.0"
    assert "authenticating proxy" in caplog.text
    caplog.clear()
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        config.load(write_config(tmp_path, f"[web]\nhost = '{host}'\n"))
    assert "authenticating proxy" not in caplog.text


def test_seed_aliases(tmp_path: Path) -> None:
    cfg = config.load(
        write_config(
            tmp_path,
            """
[llm]
extra_flags = ["--color", "never"]
extra = { model_provider = "local" }
[scheduler]
cron = "30 4 * * 1-5"
[[projects]]
path = "/srv/app"
""",
        )
    )
    assert cfg.llm.extra_args == ("--color", "never") and cfg.llm.options == {"model_provider": "local"}
    assert cfg.scheduler.schedule == "Mon..Fri *-*-* 04:30:00" and cfg.projects[0].name == "app"


LOADS_APPRISE = (
    "import sys; from pathlib import Path; from pimainteno import config; "
    "config.load(Path(sys.argv[1])); print('apprise' in sys.modules)"
)


def test_an_accepted_notify_url_is_not_asked_of_apprise_again(tmp_path: Path) -> None:
    """apprise and its plugins cost every command a quarter second; a URL it accepted once is remembered
    (a digest in the cache directory, never the URL), one it refuses is asked and refused every time."""
    path = tmp_path / "PiMainteno.toml"
    token = "tk_0123456789abcdef"
    path.write_text(f"[notify]\nurls = ['json://127.0.0.1:9/hook?token={token}']\n")

    def loads_apprise() -> bool:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # this checkout, wherever pytest runs from
        done = subprocess.run([sys.executable, "-c", LOADS_APPRISE, str(path)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip() == "True"

    assert loads_apprise()  # the first load asks
    assert not loads_apprise()  # then it is known
    cache = tmp_path / "home" / ".cache" / "pimainteno" / "apprise-accepted"
    assert token not in cache.read_text() and "json" not in cache.read_text()
    assert len(cache.read_text().split()) == 1

    path.write_text("[notify]\nurls = ['json://127.0.0.1:9/hook', 'nosuchservice://tok']\n")
    for _ in range(2):  # a refusal is not remembered
        refused = run_cli("--config", str(path), "projects")
        assert refused.returncode == errors.BAD_INPUT
        assert "apprise does not understand a nosuchservice:// URL" in refused.stderr
