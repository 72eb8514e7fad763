"""The heal and the probe figures, in a throwaway systemd (tests/sandbox.py) as the tests boot it.

Heal: a unit that crashes on start, the real codex CLI against the scripted instant model
(tests/modelserver.py, served inside the sandbox's network namespace; analytics off, pimainteno's
default), a test suite of about one second. `pimainteno watch` records the failure and queues the
heal; the driver starts `pimainteno drain` as soon as the trigger is queued (what the drain's
path unit does). Per heal: unit exit -> failures row, row -> run started, model time (the run's
llm_calls), test time (the run's `validate` step), and pimainteno's own time: unit exit -> restart
found healthy, minus model, tests and `settle`. Median of 5.

Probe: an active unit whose /health starts answering 500 (a flag file) -> the `probe` failures
row, with `health_interval = 1`, `health_failures = 2`. Median of 5.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import PY, ROOT, Row, progress, secs, verdict, workspace

if TYPE_CHECKING:
    from tests.sandbox import SystemdSandbox

ROUNDS = 5
SETTLE = 1.0
INTERVAL, FAILURES = 1, 2
CODEX = Path(os.environ.get("PIMAINTENO_TEST_CODEX") or ROOT / ".tools" / "node_modules" / ".bin" / "codex")
HEAL_UNIT, WEB_UNIT, WEB_PORT = "bench-heal.service", "bench-web.service", 18601

SERVE = """\
import time

raise SystemExit("fatal: settings file is missing")  # BREAK
print("up", flush=True)
while True:
    time.sleep(1)
"""
BREAK_LINE = 'raise SystemExit("fatal: settings file is missing")  # BREAK\n'
SLOW_TEST = """\
import time
import unittest


class Slow(unittest.TestCase):
    def test_takes_a_second(self):
        time.sleep(1)
"""
WEB = """\
import http.server, os, sys

flag = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if os.path.exists(flag) else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok\\n" if code == 200 else b"sick\\n")

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

# Runs inside the sandbox: the model server must share codex's network namespace.
DRIVER = """
import datetime, json, os, sqlite3, subprocess, sys, time
from pathlib import Path
from tests.modelserver import ModelServer, exec_command, message
from pimainteno.providers.codex import toml_value

root, codex, rounds, settle = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
heal_unit, web_unit, web_port, interval, failures = sys.argv[5], sys.argv[6], int(sys.argv[7]), sys.argv[8], sys.argv[9]
repo, web_repo, config, db_path = root / "demo-app", root / "web" / "demo-app", root / "PiMainteno.toml", root / "state" / "pimainteno.db"
py = sys.executable
pm = [py, "-m", "pimainteno", "--config", str(config), "-q"]
answer = json.dumps({"commit_subject": "Start without the missing settings file", "explanation": "removed the exit"})
script = [exec_command("sed -i '/# BREAK/d' serve.py"), message(answer)] * rounds

def wall(iso):
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()

def q(sql, params=()):
    if not db_path.exists():
        return []
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()

def wait(what, fn, limit=60.0, every=0.005):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}; watch said: {watch.stderr.read() if watch.poll() is not None else ''}")

def git(cwd, *args):
    subprocess.run(["git", "-C", str(cwd), "-c", "user.name=Owner", "-c", "user.email=owner@example.com", *args],
                   check=True, capture_output=True)

with ModelServer(script) as srv:
    llm = srv.llm_config(codex)
    options = "\\n".join(f"{k} = {toml_value(v)}" for k, v in llm.options.items())
    tests = json.dumps([py, "-m", "unittest", "discover", "-q"])
    config.write_text(
        f'[llm]\\nprovider = "codex"\\ncodex = "{codex}"\\nmodel = "{llm.model}"\\napi_key = "sk-bench"\\ntimeout = 60\\n'
        f"[llm.options]\\n{options}\\n\\n[state]\\ndir = {json.dumps(str(root / 'state'))}\\n\\n"
        f"[systemd_monitor]\\nenabled = true\\nsettle = {settle}\\nheal_limit = 1000\\ncoalesce = 0\\n\\n"
        f'[[project]]\\nname = "app"\\npath = "{repo}"\\nunit = "{heal_unit}"\\nbranch = "main"\\ntest = {tests}\\n\\n'
        f'[[project]]\\nname = "web"\\npath = "{web_repo}"\\nunit = "{web_unit}"\\nbranch = "main"\\nrestart = false\\n'
        f'health = "http://127.0.0.1:{web_port}/health"\\nhealth_timeout = 1\\n'
        f"health_interval = {interval}\\nhealth_failures = {failures}\\n"
    )
    subprocess.run(["systemctl", "start", web_unit], check=True)
    watch = subprocess.Popen([*pm, "watch"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait("the watch", lambda: q("select 1 from status where key = 'systemd.status' and value = 'listening'"))
    heals = []
    for i in range(rounds):
        if i:  # the owner breaks it again
            (repo / "serve.py").write_text((repo / "serve.py").read_text().replace("import time\\n", "import time\\n\\n" + sys.argv[10], 1))
            git(repo, "commit", "-qam", "Break it again")
            git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
        last = (q("select max(id) from failures")[0][0] or 0) if q("select 1 from failures limit 1") else 0
        requests = len(srv.requests)
        subprocess.run(["systemctl", "restart", heal_unit], capture_output=True)
        (fid, detected, heal), = wait("the failures row", lambda: q("select id, detected_at, heal from failures where id > ? and unit = ?", (last, heal_unit)))
        mono = int(subprocess.run(["systemctl", "show", "-p", "ExecMainExitTimestampMonotonic", "--value", heal_unit],
                                  capture_output=True, text=True).stdout) / 1e6
        exited = time.time() - (time.monotonic() - mono)
        trigger, = wait("the heal trigger", lambda: list((root / "state" / "queue").glob("app.heal.json")), every=0.002)
        queued = trigger.stat().st_mtime
        drained = subprocess.run([*pm, "drain"], capture_output=True, text=True)
        (run_id, started, status, steps), = q("select id, started_at, status, steps from runs where failure_id = ?", (fid,))
        calls = q("select purpose, duration_s from llm_calls where run_id = ?", (run_id,))
        (finished, outcome), = q("select finished_at, outcome from restarts where run_id = ? order by id desc limit 1", (run_id,))
        validate = sum(s["seconds"] for s in json.loads(steps) if s["step"] == "validate")
        heals.append({
            "status": status, "outcome": outcome, "detected": wall(detected) - exited, "run_started": wall(started) - wall(detected), "queued": queued - wall(detected),
            "model": sum(d or 0 for _, d in calls), "calls": len(calls), "requests": len(srv.requests) - requests,
            "tests": validate, "total": wall(finished) - exited, "drain": drained.returncode, "heal": heal,
            "steps": {s["step"]: s["seconds"] for s in json.loads(steps)},
        })
    probes = []
    flag = root / "web" / "sick"
    for i in range(rounds):
        flag.unlink(missing_ok=True)
        subprocess.run(["systemctl", "restart", web_unit], check=True)  # a new invocation: one probe failure each
        time.sleep(float(interval) + 0.5)  # a passing probe first: the streak starts from healthy
        last = q("select coalesce(max(id), 0) from failures")[0][0]
        flag.touch()
        start = time.time()
        wait("the probe failure", lambda: q("select id from failures where id > ? and result = 'probe'", (last,)), every=0.002)
        probes.append(time.time() - start)
    watch.terminate()
    watch.wait(timeout=30)
print(json.dumps({"heals": heals, "probes": probes}))
"""


def setup(ws: Any, sandbox: SystemdSandbox) -> None:
    from pimainteno.commands.demo import make_sample

    repo, _ = make_sample(ws.root)
    (repo / "serve.py").write_text(SERVE)
    (repo / "test_slow.py").write_text(SLOW_TEST)
    ws.git(repo, "add", "-A")
    ws.git(repo, "commit", "-qm", "Serve, and a one-second test")
    ws.git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    web_repo, _ = make_sample(ws.root / "web")
    (web_repo / "web.py").write_text(WEB)
    unit = "[Unit]\nStartLimitIntervalSec=0\n[Service]\n"
    sandbox.write_unit(HEAL_UNIT, f"{unit}WorkingDirectory={repo}\nExecStart={PY} serve.py\n")
    sandbox.write_unit(WEB_UNIT, f"{unit}WorkingDirectory={web_repo}\nExecStart={PY} web.py {WEB_PORT} "
                                 f"{ws.root / 'web' / 'sick'}\n")  # fmt: skip


def measure() -> list[Row]:
    heal_name = f"heal: unit crash -> restart healthy, 1 codex run, instant model, ~1 s tests (median of {ROUNDS})"
    probe_name = f"probe: /health starts failing -> failures row (interval {INTERVAL} s x {FAILURES})"
    if os.geteuid() != 0:
        return [(heal_name, "n/a (needs root)", "-", "-"), (probe_name, "n/a (needs root)", "-", "-")]
    if not os.access(CODEX, os.X_OK):
        raise RuntimeError(f"no codex at {CODEX}: run make deps")
    from tests.sandbox import SystemdSandbox, unavailable_reason

    reason = unavailable_reason()
    if reason:
        return [(heal_name, f"n/a ({reason})", "-", "-"), (probe_name, f"n/a ({reason})", "-", "-")]
    codex_home = Path(tempfile.mkdtemp(prefix="pimainteno-bench-heal-codex-", dir="/var/tmp"))  # not under /tmp
    try:
        with workspace("heal") as ws, SystemdSandbox() as sandbox:
            setup(ws, sandbox)
            progress(f"sandbox booted in {sandbox.boot_seconds:.2f}s; {ROUNDS} heals, then {ROUNDS} probe failures")
            env = {**ws.env, "CODEX_HOME": str(codex_home)}
            for name in ("OPENAI_API_KEY", "CODEX_API_KEY", "OPENAI_BASE_URL"):
                env.pop(name, None)
            argv = [str(ws.root), str(CODEX), str(ROUNDS), str(SETTLE), HEAL_UNIT, WEB_UNIT, str(WEB_PORT),
                    str(INTERVAL), str(FAILURES), BREAK_LINE]  # fmt: skip
            got = sandbox.python(["-c", textwrap.dedent(DRIVER), *argv], timeout=ROUNDS * 120 + 120, check=False,
                                 env=env)  # fmt: skip
            if got.returncode != 0:
                raise RuntimeError(f"the driver inside the sandbox failed: {(got.stderr or got.stdout)[-2000:]}")
            report: dict[str, Any] = json.loads(got.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(codex_home, ignore_errors=True)
    return rows(report, heal_name, probe_name)


def rows(report: dict[str, Any], heal_name: str, probe_name: str) -> list[Row]:
    heals, probes = report["heals"], report["probes"]
    steps = {k: statistics.median(h["steps"].get(k, 0.0) for h in heals) for k in heals[0]["steps"]}
    progress(
        f"median seconds from the failures row to the heal queued: {statistics.median(h['queued'] for h in heals):.2f}"
    )
    progress("median seconds per step of a heal run: " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    bad = [h for h in heals if h["status"] != "ok" or h["outcome"] != "healthy" or h["calls"] != 1]
    med = {k: statistics.median(h[k] for h in heals) for k in ("detected", "run_started", "model", "tests", "total")}
    own = [h["total"] - h["model"] - h["tests"] - SETTLE for h in heals]
    measured = (
        f"total {secs(med['total'])}: exit -> row {secs(med['detected'])}, row -> run {secs(med['run_started'])}, "
        f"model {secs(med['model'])}, tests {secs(med['tests'])}, settle {secs(SETTLE)}; "
        f"own {secs(statistics.median(own))}; codex runs per heal {sorted({h['calls'] for h in heals})}, "
        f"model requests {sorted({h['requests'] for h in heals})}"
    )
    if bad:
        measured += f"; NOT HEALED: {bad[0]}"
    limit = INTERVAL * FAILURES + 1
    return [
        (
            heal_name,
            measured,
            "issue 15 before: 18.9 s, 3 codex runs",
            f"1 codex run, own <= 1 s: {verdict(not bad and statistics.median(own) <= 1.0)}",
        ),  # fmt: skip
        (
            probe_name,
            f"median {secs(statistics.median(probes))}, worst {secs(max(probes))}",
            "-",
            f"<= {limit} s: {verdict(max(probes) <= limit)}",
        ),  # fmt: skip
    ]
