"""docs/models.md's configurations, run as written: each `toml` block is loaded as pimainteno's
configuration and the real codex CLI answers through it from a scripted local Responses server.
Only the server's address is changed (and, for ollama, given as CODEX_OSS_BASE_URL as the doc says)."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pimainteno import config
from pimainteno.providers.codex import run_codex
from tests.conftest import REPO_ROOT, make_repo
from tests.modelserver import ModelServer, _Handler, _Server, message

DOC = (REPO_ROOT / "docs" / "models.md").read_text()
BLOCKS = dict(re.findall(r"<!-- models: ([\w-]+) -->\n```toml\n(.*?)```", DOC, re.S))


class _OllamaHandler(_Handler):
    """ollama's own API as codex's `--oss` start-up asks it: the version and the pulled models."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/api/version"):
            self.srv.paths.append(self.path)
            self._json(200, {"version": "0.13.5"})
        elif path.endswith("/api/tags"):
            self.srv.paths.append(self.path)
            self._json(200, {"models": [{"name": self.srv.ollama_model, "model": self.srv.ollama_model}]})
        else:
            super().do_GET()


class OllamaServer(ModelServer):
    ollama_model = ""

    def __enter__(self) -> OllamaServer:
        server = self

        class Handler(_OllamaHandler):
            srv = server

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ollama", daemon=True)
        self._thread.start()
        return self


@pytest.fixture
def codex_home_outside_tmp(codex_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """codex refuses its sandbox helper under /tmp when bubblewrap is installed (docs/models.md)."""
    home = Path(tempfile.mkdtemp(prefix="pimainteno-models-", dir="/var/tmp"))
    monkeypatch.setenv("CODEX_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def load_block(name: str, url: str, codex_bin: Path) -> config.Config:
    text = BLOCKS[name]
    data: dict[str, Any] = tomllib.loads(re.sub(r'base_url = "[^"]*"', f'base_url = "{url}"', text))
    data["llm"]["codex"] = str(codex_bin)  # the pinned CLI of this checkout, not one on PATH
    return config.from_dict(data)


def test_the_doc_has_the_three_configurations() -> None:
    assert set(BLOCKS) == {"ollama", "llama-server", "responses"}
    for text in BLOCKS.values():
        assert "api_key" not in text and "env_key" not in text  # keyless, as documented


@pytest.mark.codex
@pytest.mark.parametrize("name", ["llama-server", "responses"])
def test_a_responses_endpoint_as_documented(
    name: str, tmp_path: Path, codex_bin: Path, codex_home_outside_tmp: Path
) -> None:
    repo = make_repo(tmp_path / "app")
    with ModelServer([message("The project is a sample.")]) as srv:
        cfg = load_block(name, srv.url, codex_bin)
        result = run_codex(cfg.llm, repo, "Summarize this project.", writable=False, timeout=60)
    assert result.ok, result.error
    assert result.text == "The project is a sample."
    assert srv.requests[0]["model"] == cfg.llm.model
    assert "authorization" not in srv.headers[0]  # keyless


@pytest.mark.codex
def test_ollama_with_oss_as_documented(tmp_path: Path, codex_bin: Path, codex_home_outside_tmp: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    repo = make_repo(tmp_path / "app")
    with OllamaServer([message("Hello from ollama.")]) as srv:
        cfg = load_block("ollama", srv.url, codex_bin)
        srv.ollama_model = cfg.llm.model or ""
        monkeypatch.setenv("CODEX_OSS_BASE_URL", srv.url)  # "ollama on another port or machine"
        result = run_codex(cfg.llm, repo, "Summarize this project.", writable=False, timeout=60)
    assert result.ok, result.error
    assert result.text == "Hello from ollama."
    assert "/api/tags" in srv.paths and srv.requests[0]["model"] == "qwen2.5-coder:7b"
