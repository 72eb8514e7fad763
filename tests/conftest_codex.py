"""Fixtures for tests that run the real codex CLI against a scripted model server.

Load them with ``pytest_plugins = ["tests.conftest_codex"]`` (in the root conftest or a test module).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.modelserver import ModelServer, Turn

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_CODEX = REPO_ROOT / ".tools" / "node_modules" / ".bin" / "codex"


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    """The real codex CLI: the project-local install, else the one on PATH, else skip."""
    if LOCAL_CODEX.is_file() and os.access(LOCAL_CODEX, os.X_OK):
        return LOCAL_CODEX
    found = shutil.which("codex")
    if found:
        return Path(found)
    pytest.skip("codex CLI not installed: run make test, which installs @openai/codex@0.169.0")


@pytest.fixture
def codex_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private CODEX_HOME; keys inherited from the developer's shell are removed too."""
    for name in ("OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_ACCESS_TOKEN", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "codex-home"
    home.mkdir()
    monkeypatch.setenv("CODEX_HOME", str(home))
    return home


@pytest.fixture
def model_server() -> Iterator[Callable[[list[Turn]], ModelServer]]:
    """``srv = model_server([message("hi")])``: a started server, stopped at teardown."""
    with ExitStack() as stack:
        yield lambda script: stack.enter_context(ModelServer(script))
