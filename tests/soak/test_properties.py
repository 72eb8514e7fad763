"""Random bad input for the configuration loader, the trigger-file parser and `apply --check`.

Never a traceback (only pimainteno.errors.PimaintenoError, in one line) and never a change to a
repository. The patch policy's own properties live in tests/test_patch.py; here its strategies
are reused one level up, through `pimainteno apply --check`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pimainteno import config, queue
from pimainteno.app import App
from pimainteno.commands.apply import apply
from pimainteno.commands.drain import drain
from pimainteno.errors import PimaintenoError
from tests.conftest import PROFILES, REPO_ROOT, fuzz, make_repo
from tests.soak.helpers import repo_state
from tests.test_patch import POLICIES, mutants, snapshot
from tests.test_patch import make_repo as make_patch_repo


def one_line(e: PimaintenoError) -> None:
    assert str(e) and "\n" not in str(e), repr(str(e))


# --- the configuration ------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
SECTIONS = {
    "llm": ["provider", "model", "api_key", "api_key_env", "codex", "extra_args", "args", "extra_flags", "options",
            "extra", "command", "timeout"],
    "state": ["dir"], "database": ["path"], "cache": ["path"], "queue": ["dir"],
    "scheduler": ["enabled", "schedule", "cron", "projects"],
    "systemd_monitor": ["enabled", "units", "user", "settle", "restart_timeout", "heal_limit", "heal_window",
                        "journal_lines"],
    "web": ["host", "port", "token", "allow"], "git": ["author", "timeout"],
    "policy": ["max_files", "max_lines", "protected", "extra_protected", "allow_new_files", "allow_delete",
               "allow_exec", "allow_binary"],
}  # fmt: skip
PROJECT_KEYS = ["name", "path", "unit", "remote", "branch", "push_branch", "test", "test_timeout", "mode",
                "propose_when", "retries", "summary_file", "provider", "command", "policy", "restart"]  # fmt: skip
# Plausible values next to random ones, so validation gets past the first key.
GOOD = st.sampled_from(["codex", "command", "push", "propose", "signal", "0 3 * * *", "daily", "app", ".", "~/x",
                        "true", ["true"], 1, 30, 8001, True, False, {"id": "root"}])  # fmt: skip


def table(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), GOOD | VALUES, max_size=6)


CONFIGS = st.fixed_dictionaries(
    {}, optional={
        **{name: table(keys) | VALUES for name, keys in SECTIONS.items()},
        "project": st.lists(table(PROJECT_KEYS) | VALUES, max_size=3) | VALUES,
        "projects": st.lists(table(PROJECT_KEYS), max_size=2),
    },
) | st.dictionaries(st.text(max_size=8), VALUES, max_size=4)  # fmt: skip


@pytest.fixture(scope="module")
def sample_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A repository the configurations point at; checked untouched once all examples ran."""
    repo = make_repo(tmp_path_factory.mktemp("props") / "app")
    before = repo_state(repo)
    yield repo
    assert repo_state(repo) == before


@pytest.mark.parametrize("profile", PROFILES)
def test_config_from_dict_accepts_or_refuses_in_one_line(sample_repo: Path, profile: str) -> None:
    @fuzz(profile, full=600)
    @given(data=CONFIGS)
    @example(data={"project": [{"path": "app", "name": "../x"}]})
    @example(data={"web": {"port": 10**30}, "llm": {"timeout": float("nan")}})
    def check(data: dict[str, Any]) -> None:
        around = sorted(os.listdir(sample_repo.parent))  # loading creates nothing (state, queue, database)
        try:
            cfg = config.from_dict(data, sample_repo.parent / "PiMainteno.toml")
        except PimaintenoError as e:
            one_line(e)
        else:
            assert isinstance(cfg, config.Config)
            for project in cfg.projects:
                config.check_project_path(project)  # a message or None, never an exception
        assert sorted(os.listdir(sample_repo.parent)) == around

    check()


EXAMPLE = (REPO_ROOT / "PiMainteno.toml").read_text()


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    """The annotated example configuration, with lines uncommented, dropped, repeated or garbled."""
    lines = EXAMPLE.splitlines()
    for _ in range(draw(st.integers(1, 6))):
        k = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["uncomment", "uncomment", "delete", "duplicate", "char", "value"]))
        if op == "uncomment":
            lines[k] = re.sub(r"^#\s?", "", lines[k])
        elif op == "delete":
            del lines[k]
        elif op == "duplicate":
            lines.insert(k, lines[k])
        elif op == "char":
            pos = draw(st.integers(0, len(lines[k])))
            lines[k] = lines[k][:pos] + draw(st.sampled_from(list("[]{}=\"'#.,\\\n\x00 é"))) + lines[k][pos:]
        elif "=" in lines[k]:
            lines[k] = lines[k].split("=", 1)[0] + "= " + draw(st.sampled_from(["[]", "{}", "-1", '""', "1e999", "[[1]]",
                                                                              "true", '"~nobody/x"', "0"]))  # fmt: skip
    return "\n".join(lines) + "\n"


DEEP_TOML = "x = " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_JSON = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize("profile", PROFILES)
def test_config_load_refuses_bad_files_in_one_line(tmp_path: Path, profile: str) -> None:
    @fuzz(profile, full=300)
    @given(text=mutated_example() | st.text(max_size=300), as_json=st.booleans())
    @example(text=DEEP_TOML, as_json=False)  # tomllib recurses: a RecursionError, not a ConfigError
    @example(text=DEEP_JSON, as_json=True)
    def check(text: str, as_json: bool) -> None:
        path = tmp_path / ("PiMainteno.json" if as_json else "PiMainteno.toml")
        if as_json:
            try:  # the same content, as JSON when it is TOML at all
                import tomllib

                text = json.dumps(tomllib.loads(text))
            except Exception:  # noqa: BLE001 - not TOML: the text itself is the bad JSON
                pass
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            config.load(path)
        except PimaintenoError as e:
            one_line(e)

    check()


@pytest.mark.parametrize("profile", PROFILES)
def test_config_load_refuses_random_bytes_in_one_line(tmp_path: Path, profile: str) -> None:
    @fuzz(profile, full=150)
    @given(data=st.binary(max_size=400))
    def check(data: bytes) -> None:
        for name in ("PiMainteno.toml", "PiMainteno.json"):
            (tmp_path / name).write_bytes(data)
            try:
                config.load(tmp_path / name)
            except PimaintenoError as e:
                one_line(e)

    check()


# --- the trigger-file parser ------------------------------------------------------------------

FIELDS = ["format", "project", "kind", "source", "reason", "failure_id", "proposal_id", "requested_at", "id",
          "requests", "attempts", "path"]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
TRIGGER_VALUES = st.sampled_from(["app", "run", "heal", "apply", "reject", "hook", "cli", 1, 7, 0, -1, True, None, 1,
                                  "2026-11-24T00:00:00.000Z"]) | JSON_VALUES  # fmt: skip
VALID = queue.Trigger("app", "heal", "watch", "it failed", 3, None, "2026-11-24T00:00:00.000Z", "ab", 2, 0)


@st.composite
def valid_trigger_files(draw: st.DrawFn) -> bytes:
    """Well-formed triggers of every kind, so the drain really runs (and refuses) some of them."""
    kind = draw(st.sampled_from(queue.KINDS))
    number = draw(st.integers(1, 3))
    return queue.Trigger(
        "app", kind, draw(st.sampled_from(queue.SOURCES)), draw(st.none() | st.text(max_size=40)),
        number if kind == "heal" else None, number if kind in ("apply", "reject") else None,
        "2026-11-24T00:00:00.000Z", "cd", draw(st.integers(1, 5)), draw(st.integers(0, 3)),
    ).to_json()  # fmt: skip


@st.composite
def trigger_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["object", "mutated", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "object":
        return json.dumps(draw(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), TRIGGER_VALUES))).encode()
    text = bytearray(VALID.to_json())
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        text[pos : pos + draw(st.integers(0, 3))] = draw(st.binary(max_size=3) | st.sampled_from([b'"', b"{", b"]"]))
    return bytes(text)


@pytest.mark.parametrize("profile", PROFILES)
def test_trigger_parser_accepts_or_refuses_in_one_line(profile: str) -> None:
    @fuzz(profile, full=1500)
    @given(data=trigger_files())
    @example(data=b"[" * 60_000)  # json recurses: a RecursionError, not a MalformedTrigger
    @example(data=b'{"project": "app", "format": 1.0}')
    def check(data: bytes) -> None:
        try:
            trigger = queue.parse_trigger(data)
        except queue.MalformedTrigger as e:
            one_line(e)
        else:
            assert queue.parse_trigger(trigger.to_json()) == trigger  # what is accepted is written back the same
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.(run|heal|apply-\d+|reject-\d+)", trigger.key)

    check()


@pytest.fixture
def drained_app(tmp_path: Path) -> tuple[App, Path]:
    repo = make_repo(tmp_path / "app")
    (tmp_path / "PiMainteno.toml").write_text(
        f'[llm]\nprovider = "command"\ncommand = "true"\n\n[[project]]\nname = "app"\npath = "{repo}"\ntest = "true"\n'
    )
    return App(), repo


@pytest.mark.parametrize("profile", PROFILES)
def test_drain_of_random_trigger_files_never_breaks_or_touches_the_repository(
    drained_app: tuple[App, Path], profile: str
) -> None:
    @fuzz(profile, full=25)
    @given(files=st.lists(st.tuples(st.sampled_from(["app.run.json", "app.heal.json", "app.apply-1.json", "x.json",
                                                     "notes.txt", "app.run.json.tmp"]), valid_trigger_files() | trigger_files()),
                          min_size=1, max_size=3))  # fmt: skip
    @example(files=[("app.run.json", b"[" * 60_000)])  # the parser and the drain's record of it recurse
    def check(files: list[tuple[str, bytes]]) -> None:
        app, repo = drained_app
        before = repo_state(repo)
        queue.ensure_dir(app.config.queue_dir)
        for name, data in files:
            (app.config.queue_dir / name).write_bytes(data)
        records = drain(app)  # every outcome is a record; nothing raises
        assert records and all(r["status"] in ("done", "failed", "malformed", "unknown-project") for r in records)
        assert not [p for p in app.config.queue_dir.iterdir() if not p.name.startswith(".")], "a file stayed pending"
        assert repo_state(repo) == before

    check()


# --- the patch policy, one level up: `apply --check` --------------------------------------------


@pytest.fixture(scope="module")
def patch_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_patch_repo(tmp_path_factory.mktemp("apply") / "repo")


@pytest.mark.parametrize("profile", PROFILES)
def test_apply_check_only_refuses_in_one_line_and_changes_nothing(
    tmp_path: Path, patch_repo: Path, profile: str
) -> None:
    @fuzz(profile, full=150)
    @given(text=mutants() | st.text(max_size=200), policy=POLICIES)
    def check(text: str, policy: config.PatchPolicy) -> None:
        protected = json.dumps(list(policy.protected))
        (tmp_path / "PiMainteno.toml").write_text(
            f'[[project]]\nname = "app"\npath = "{patch_repo}"\n\n[project.policy]\nallow_exec = {json.dumps(policy.allow_exec)}\n'
            f"allow_binary = {json.dumps(policy.allow_binary)}\nprotected = {protected}\n"
        )
        before = snapshot(patch_repo)
        try:
            applied = apply(App(), text, project_name="app", check_only=True)
            if not text.strip():
                assert applied is None  # nothing to apply: success, with a hint on stderr
            else:
                assert applied is not None and applied.checked_only
        except PimaintenoError as e:
            one_line(e)
        assert snapshot(patch_repo) == before

    check()
