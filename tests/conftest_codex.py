"""Fixtures for tests that run the real codex CLI against a scripted model server.

Load them with ``pytest_plugins = ["tests.conftest_codex"]`` (in the root conftest or a test module).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.modelserver import ModelServer, Turn

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_CODEX = REPO_ROOT / ".tools" / "node_modules" / ".bin" / "codex"


# codex refuses to create its sandbox helper under a temporary directory such as /tmp (then every
# sandboxed command fails once bubblewrap is installed), and pytest's tmp_path is under /tmp.
CODEX_HOME_PARENT = Path("/var/tmp")
# `make test-codex-latest` points this at another codex install to run the same tests against it.
CODEX_ENV = "PIMAINTENO_TEST_CODEX"


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    """The real codex CLI: $PIMAINTENO_TEST_CODEX, else the project-local install, else PATH, else skip."""
    chosen = os.environ.get(CODEX_ENV)
    if chosen:
        if not os.access(chosen, os.X_OK):
            pytest.fail(f"{CODEX_ENV}={chosen} is not an executable codex")
        return Path(chosen)
    if LOCAL_CODEX.is_file() and os.access(LOCAL_CODEX, os.X_OK):
        return LOCAL_CODEX
    found = shutil.which("codex")
    if found:
        return Path(found)
    pytest.skip("codex CLI not installed: run make test, which installs @openai/codex@0.169.0")


@pytest.fixture
def codex_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private CODEX_HOME outside /tmp, removed afterwards; keys from the developer's shell are removed."""
    for name in ("OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_ACCESS_TOKEN", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    home = Path(tempfile.mkdtemp(prefix="pimainteno-codex-home-", dir=CODEX_HOME_PARENT))
    monkeypatch.setenv("CODEX_HOME", str(home))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def model_server() -> Iterator[Callable[[list[Turn]], ModelServer]]:
    """``srv = model_server([message("hi")])``: a started server, stopped at teardown."""
    with ExitStack() as stack:
        yield lambda script: stack.enter_context(ModelServer(script))
