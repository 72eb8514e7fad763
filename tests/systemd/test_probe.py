"""Health probes against a real systemd (tests/sandbox.py): a patch whose service starts but answers
500 is rolled back; a service that stays active but stops answering is recorded by `watch` as a
`probe` failure and healed. Notifications go to a receiver running inside the sandbox."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from pimainteno import errors
from tests.sandbox import REPO, SystemdSandbox
from tests.systemd.project import PY, git, make_project, pm, query, service_unit, service_workdir, wait_for

pytestmark = pytest.mark.systemd
SECRET = "sk-probe-test-0123456789abcdef"

# The service: /health answers STATUS, and 500 once it has served LIMIT requests (0: no limit).
WEB = """\
import http.server, sys

STATUS = 200
LIMIT = 0
served = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global served
        served += 1
        code = 500 if LIMIT and served > LIMIT else STATUS
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok\\n" if code == 200 else b"database connection lost\\n")

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

# "break": a patch that passes the tests but makes /health answer 500. "heal": when the prompt
# carries the probe's failure, lift the request limit that breaks the service.
FIXER = """\
import os, pathlib, sys

web = pathlib.Path("web.py")
if sys.argv[1] == "break":
    web.write_text(web.read_text().replace("STATUS = 200", "STATUS = 500"))
elif "is running but failed its health probe" in os.environ.get("PIMAINTENO_PROMPT", ""):
    web.write_text(web.read_text().replace("LIMIT = 3", "LIMIT = 0"))
"""

# A notification receiver inside the sandbox's network namespace: each POST body is one line of OUT.
RECEIVER = """\
import http.server, sys

out = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "ab") as f:
            f.write(body.replace(b"\\n", b" ") + b"\\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@pytest.fixture
def root(systemd_sandbox: SystemdSandbox) -> Iterator[Path]:
    with service_workdir(systemd_sandbox, "probe") as path:
        yield path


def web_project(root: Path, sandbox: SystemdSandbox, *, fixer: str, port: int, limit: int = 0,
                extra: str = "", project_extra: str = "") -> Path:  # fmt: skip
    config = make_project(root, unit="pm-web.service", extra=extra)
    repo = root / "demo-app"
    (repo / "web.py").write_text(WEB.replace("LIMIT = 0", f"LIMIT = {limit}"))
    git(repo, "add", "web.py")
    git(repo, "commit", "-qm", "Serve /health")
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    (root / "fixer.py").write_text(FIXER)
    text = config.read_text().replace(f'"{root / "fixer.py"}", "heal"]', f'"{root / "fixer.py"}", "{fixer}"]')
    config.write_text(f'{text}health = "http://127.0.0.1:{port}/health?token={SECRET}"\nhealth_timeout = 2\n'
                      f"{project_extra}")  # fmt: skip
    config.write_text(config.read_text().replace("[llm]\n", f'[llm]\napi_key = "{SECRET}"\n', 1))
    sandbox.write_unit("pm-web.service", f"[Service]\nWorkingDirectory={repo}\nExecStart={PY} web.py {port}\n")
    sandbox.systemctl("restart", "pm-web.service")
    return config


def start_receiver(sandbox: SystemdSandbox, root: Path, port: int) -> Path:
    out = root / "received.jsonl"
    (root / "receiver.py").write_text(RECEIVER)
    sandbox.run(["systemd-run", f"--unit=pm-receiver-{port}", PY, str(root / "receiver.py"), str(port), str(out)])
    return out


def received(out: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_a_patch_that_answers_500_is_rolled_back_reverted_on_the_remote_and_restarted_healthy(
    systemd_sandbox: SystemdSandbox, root: Path
) -> None:
    out = start_receiver(systemd_sandbox, root, 18501)
    notify = '[notify]\nurls = ["json://127.0.0.1:18501/hook"]\nevents = ["rolled_back", "pushed"]\ntimeout = 3\n'
    config = web_project(root, systemd_sandbox, fixer="break", port=18502,
                         extra=f"[systemd_monitor]\nsettle = 1\n\n{notify}")  # fmt: skip
    repo, remote = root / "demo-app", root / "remote.git"
    before = git(repo, "rev-parse", "HEAD").strip()

    result = pm(systemd_sandbox, config, "run", "app")
    assert result.returncode == errors.VALIDATION_FAILED, result.stderr
    assert result.stdout.startswith("app: rolled_back — run #1 — proposal #1 — commit ")
    assert SECRET not in result.stdout + result.stderr and "health?token=[redacted]" in result.stdout

    (patch_sha, _), (revert_sha, _) = query(root, "SELECT sha, kind FROM commits ORDER BY id")
    assert git(remote, "rev-parse", "main").strip() == revert_sha == git(repo, "rev-parse", "HEAD").strip()
    assert git(remote, "rev-list", "--reverse", f"{before}..main").split() == [patch_sha, revert_sha]
    assert git(repo, "diff", before, revert_sha) == ""
    (first, first_detail), (second, second_detail) = query(root, "SELECT outcome, detail FROM restarts ORDER BY id")
    assert first == "unhealthy" and "health probe failed: GET http://127.0.0.1:18502/health" in first_detail
    assert ": 500" in first_detail and "stayed active (running)" in first_detail  # active, yet unhealthy
    assert second == "healthy" and "health probe passed" in second_detail
    assert SECRET not in first_detail + second_detail
    assert query(root, "SELECT status FROM proposals") == [("rolled_back",)]
    assert systemd_sandbox.systemctl("is-active", "pm-web.service").stdout.strip() == "active"

    (note,) = wait_for("the notification", lambda: received(out))
    assert note["title"] == "pimainteno: app rolled a fix back"
    assert "run #1: pm-web.service was unhealthy after the restart" in note["message"] and ": 500" in note["message"]
    assert SECRET not in note["message"] and "[redacted]" in note["message"]
    assert query(root, "SELECT event, target, outcome FROM notifications") == [("rolled_back", "json", "sent")]


def test_watch_records_a_probe_failure_of_an_active_service_and_the_heal_fixes_it(
    systemd_sandbox: SystemdSandbox, root: Path
) -> None:
    config = web_project(root, systemd_sandbox, fixer="heal", port=18503, limit=3,
                         extra="[systemd_monitor]\nenabled = true\nsettle = 1\n",
                         project_extra="health_interval = 1\nhealth_failures = 2\n")  # fmt: skip
    repo, remote = root / "demo-app", root / "remote.git"
    done: list[CompletedProcess[str]] = []
    watcher = threading.Thread(target=lambda: done.append(pm(systemd_sandbox, config, "watch", "--for", "12")))
    watcher.start()
    # 3 good answers, then 500s: 2 failed probes in a row, 1 s apart, are a failure of the unit
    (failure,) = wait_for("the probe failure", lambda: query(root, "SELECT id, result, source, heal FROM failures"),
                          timeout=20)  # fmt: skip
    assert failure == (1, "probe", "probe", "queued")
    assert systemd_sandbox.systemctl("is-active", "pm-web.service").stdout.strip() == "active"
    journal = wait_for("the journal", lambda: query(root, "SELECT journal FROM failures WHERE journal IS NOT NULL"))
    assert journal[0][0].startswith("Health probe failed: GET http://127.0.0.1:18503/health")
    assert "database connection lost" in journal[0][0] and SECRET not in journal[0][0]
    queued = wait_for("the heal trigger", lambda: list((root / "state" / "queue").glob("*.json")))
    assert all(SECRET not in p.read_text() for p in queued)  # the trigger's reason is scrubbed too

    healed = pm(systemd_sandbox, config, "drain")
    assert healed.returncode == 0, healed.stderr
    (status, trigger, failure_id), = query(root, "SELECT status, trigger, failure_id FROM runs")  # fmt: skip
    assert (status, failure_id) == ("ok", 1)
    assert "LIMIT = 0" in (repo / "web.py").read_text()
    assert git(remote, "rev-parse", "main") == git(repo, "rev-parse", "HEAD")
    (outcome, detail), = query(root, "SELECT outcome, detail FROM restarts")  # fmt: skip
    assert outcome == "healthy" and "health probe passed" in detail
    watcher.join(30)
    assert done[0].returncode == 0, done[0].stderr
    assert done[0].stdout.startswith("failure #1 pm-web.service (probe, status 0): heal queued")
    assert SECRET not in done[0].stdout + done[0].stderr + healed.stdout + healed.stderr
    assert query(root, "SELECT count(*) FROM failures") == [(1,)]  # the healed service's probes pass again


# The scripted model, inside the sandbox's network namespace (codex runs there): URL and request count to files.
MODEL = """\
import json, pathlib, sys, time
from tests.modelserver import ModelServer, exec_command, message

out = pathlib.Path(sys.argv[1])
answer = json.dumps({"commit_subject": "Start without the missing settings file", "explanation": "removed it"})
with ModelServer([exec_command("sed -i '/# BREAK/d' serve.py"), message(answer)]) as srv:
    (out / "url.tmp").write_text(srv.url)
    (out / "url.tmp").rename(out / "url")
    while True:
        (out / "requests").write_text(str(len(srv.requests)))
        time.sleep(0.05)
"""


@pytest.mark.codex
def test_a_crash_heal_makes_one_codex_run_and_restarts_healthy(
    systemd_sandbox: SystemdSandbox, root: Path, codex_bin: Path, codex_home: Path
) -> None:
    from pimainteno.providers.codex import toml_value
    from tests.modelserver import MODEL as MODEL_NAME
    from tests.modelserver import PROVIDER

    config = make_project(root, unit="pm-crash.service", extra="[systemd_monitor]\nsettle = 1\n")
    repo = root / "demo-app"
    serve = (repo / "serve.py").read_text()
    (repo / "serve.py").write_text(serve.replace("\n\nprint(", '\n\nraise SystemExit("fatal: settings file is missing")'
                                                 "  # BREAK\nprint(", 1))  # fmt: skip
    git(repo, "commit", "-qam", "Need a settings file")
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    (root / "model.py").write_text(MODEL)
    systemd_sandbox.run(["systemd-run", "--unit=pm-model", f"--setenv=PYTHONPATH={REPO}", PY, str(root / "model.py"),
                         str(root)])  # fmt: skip
    url = wait_for("the model server", lambda: (root / "url").exists() and (root / "url").read_text())
    provider = {"name": PROVIDER, "base_url": url, "wire_api": "responses", "request_max_retries": 0,
                "stream_max_retries": 0}  # fmt: skip
    options = {"model_provider": PROVIDER, "model_providers": {PROVIDER: provider}}
    llm = (f'[llm]\nprovider = "codex"\ncodex = "{codex_bin}"\nmodel = "{MODEL_NAME}"\napi_key = "{SECRET}"\n'
           f"timeout = 60\n[llm.options]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in options.items()) + "\n\n")  # fmt: skip
    text = config.read_text()
    config.write_text(llm + text[text.index("[state]") :])
    systemd_sandbox.write_unit("pm-crash.service", service_unit(root))
    systemd_sandbox.systemctl("start", "pm-crash.service", check=False)
    wait_for("the crash", lambda: systemd_sandbox.systemctl("is-failed", "--quiet", "pm-crash.service",
                                                            check=False).returncode == 0)  # fmt: skip

    recorded = pm(systemd_sandbox, config, "heal", "pm-crash.service")
    assert recorded.returncode == 0 and "heal queued" in recorded.stdout, recorded.stderr
    healed = pm(systemd_sandbox, config, "drain")
    assert healed.returncode == 0, healed.stderr
    assert query(root, "SELECT status FROM runs") == [("ok",)]
    assert query(root, "SELECT purpose, outcome FROM llm_calls") == [("patch", "ok")]  # one codex run
    assert wait_for("the request count", lambda: (root / "requests").read_text() == "2")  # its two turns
    assert git(repo, "log", "-1", "--format=%s").strip() == "Start without the missing settings file"
    assert git(root / "remote.git", "rev-parse", "main") == git(repo, "rev-parse", "HEAD")
    assert query(root, "SELECT outcome FROM restarts") == [("healthy",)]
    assert systemd_sandbox.systemctl("is-active", "pm-crash.service").stdout.strip() == "active"
    systemd_sandbox.systemctl("stop", "pm-model.service", "pm-crash.service")
