"""A scripted local model server speaking the OpenAI Responses API (SSE), for codex tests.

Each POST to ``/v1/responses`` takes the next turn of the script (when it runs out, an HTTP 500).
The real ``codex`` CLI is pointed at it with ``srv.llm_config(codex_path)``; tests then assert on
``srv.requests`` (the JSON bodies) and ``srv.headers``.

    with ModelServer([exec_command("sed -i s/a/b/ f.txt"), message("Changed f.txt")]) as srv:
        result = run_codex(srv.llm_config(codex_bin), repo, "fix it", writable=True)
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pimainteno.config import LLMConfig

PROVIDER = "pimtest"
MODEL = "pimtest-model"


def tokens(input_tokens: int = 100, output_tokens: int = 20, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """The ``usage`` of a ``response.completed`` event."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


@dataclass(frozen=True)
class Turn:
    """One scripted reply; build it with the functions below."""

    kind: str  # message | exec | failed | http_error | hang | garbage | drop
    text: str = ""
    cmd: str = ""
    workdir: str | None = None
    status: int = 200
    usage: dict[str, Any] = field(default_factory=tokens)


def message(text: str, usage: dict[str, Any] | None = None) -> Turn:
    """An assistant message that ends the turn."""
    return Turn("message", text=text, usage=usage or tokens())


def exec_command(cmd: str, *, text: str = "", workdir: str | None = None, usage: dict[str, Any] | None = None) -> Turn:
    """An ``exec_command`` tool call (``cmd`` is one shell string); codex runs it and asks again.

    ``text``, if given, is an assistant message sent before the call (a preamble).
    """
    return Turn("exec", text=text, cmd=cmd, workdir=workdir, usage=usage or tokens())


def failed(text: str = "the model is overloaded") -> Turn:
    """HTTP 200 with an SSE ``response.failed`` event: codex ends with ``turn.failed``."""
    return Turn("failed", text=text)


def http_error(status: int = 500, text: str = "internal server error") -> Turn:
    """A plain HTTP error with a JSON body: codex ends with ``turn.failed`` too."""
    return Turn("http_error", text=text, status=status)


def hang() -> Turn:
    """Accept the request and never answer (until the server stops)."""
    return Turn("hang")


def garbage(text: str = "this is not server-sent events\n{{{\n") -> Turn:
    """HTTP 200, ``text/event-stream``, and a body that is not SSE."""
    return Turn("garbage", text=text)


def drop() -> Turn:
    """Read the request, then close the connection without a response."""
    return Turn("drop")


class ModelServer:
    """``with ModelServer(script) as srv:`` serves the script on 127.0.0.1 and an ephemeral port."""

    def __init__(self, script: list[Turn] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []  # JSON bodies of the POSTs to /responses
        self.headers: list[dict[str, str]] = []  # their headers, lower-cased names
        self.paths: list[str] = []  # every request line's path, GETs included
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "use ModelServer as a context manager"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def llm_config(self, codex_path: str | Path, *, env_key: str | None = None, **overrides: Any) -> LLMConfig:
        """An LLMConfig that points codex at this server; ``env_key`` makes codex send that env var as key."""
        provider: dict[str, Any] = {
            "name": PROVIDER,
            "base_url": self.url,
            "wire_api": "responses",
            # codex retries 4 times per request and reconnects 5 times per stream by default
            "request_max_retries": 0,
            "stream_max_retries": 0,
        }
        if env_key:
            provider["env_key"] = env_key
        options = {"model_provider": PROVIDER, "model_providers": {PROVIDER: provider}}
        options.update(overrides.pop("options", {}))
        overrides.setdefault("model", MODEL)
        return LLMConfig(provider="codex", codex=str(codex_path), options=options, **overrides)

    def prompts(self) -> list[str]:
        """The text of every user message sent, in order (environment context included)."""
        return [
            part.get("text", "")
            for body in self.requests
            for item in body.get("input", [])
            if item.get("type") == "message" and item.get("role") == "user"
            for part in item.get("content", [])
        ]

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> Turn:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            return self.script.pop(0) if self.script else http_error(500, "model server script exhausted")

    def __enter__(self) -> ModelServer:
        server = self

        class Handler(_Handler):
            srv = server

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="modelserver", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # releases hung handlers
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # never join handler threads on close

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # codex hanging up mid-reply (killed, or a dropped turn) is expected here


class _Handler(BaseHTTPRequestHandler):
    srv: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.srv.paths.append(self.path)
        if self.path.split("?")[0].rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [], "models": []})
        else:
            self._json(404, {"error": {"message": f"no such path {self.path}"}})

    def do_POST(self) -> None:
        self.srv.paths.append(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.split("?")[0].endswith("/responses"):
            self._json(404, {"error": {"message": f"no such path {self.path}"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        turn = self.srv._next(body, {k.lower(): v for k, v in self.headers.items()})
        getattr(self, "_" + turn.kind)(turn)

    def _json(self, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _sse(self) -> str:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the body ends when the connection does
        self.end_headers()
        self.close_connection = True
        rid = f"resp_{next(self.srv._ids)}"
        self._event("response.created", {"response": {"id": rid, "status": "in_progress"}})
        return rid

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        self.wfile.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())
        self.wfile.flush()

    def _message(self, turn: Turn) -> None:
        rid, n = self._sse(), next(self.srv._ids)
        items: list[dict[str, Any]] = []
        if turn.text:
            content = [{"type": "output_text", "text": turn.text, "annotations": []}]
            items.append({"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                          "content": content})  # fmt: skip
        if turn.kind == "exec":
            args = {"cmd": turn.cmd, **({"workdir": turn.workdir} if turn.workdir else {})}
            items.append({"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": "exec_command",
                          "arguments": json.dumps(args), "status": "completed"})  # fmt: skip
        for i, item in enumerate(items):
            self._event("response.output_item.done", {"output_index": i, "item": item})
        self._event("response.completed", {"response": {"id": rid, "status": "completed", "usage": turn.usage}})

    _exec = _message

    def _failed(self, turn: Turn) -> None:
        rid = self._sse()
        error = {"code": "server_error", "message": turn.text}
        self._event("response.failed", {"response": {"id": rid, "status": "failed", "error": error}})

    def _http_error(self, turn: Turn) -> None:
        self._json(turn.status, {"error": {"message": turn.text, "type": "server_error"}})

    def _hang(self, turn: Turn) -> None:
        self.srv._stop.wait()
        self.close_connection = True

    def _garbage(self, turn: Turn) -> None:
        payload = turn.text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True

    def _drop(self, turn: Turn) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
