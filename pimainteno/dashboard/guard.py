"""Defence in depth around every request (Datasette's `asgi_wrapper`), before Datasette sees it.

- A present but wrong `Authorization: Bearer` token is 403, whatever cookie comes with it: a script
  with a stale token must not act as whoever's browser cookie it also carries.
- Filters, facets, sorting and searches on the pimainteno database may only use columns that hold
  no free text (ids, names, statuses, times). A filter like `?error__contains=sk-` would otherwise
  be a yes/no oracle for a secret even when every cell is redacted, and a facet lists raw values.
  The refusal (400) depends on the column only, never on whether a secret matches.
- Every response body (HTML, JSON, CSV, facets, exports) has the known secret values (`[llm]
  api_key`, `[web] token`, the key environment variables) replaced by `[redacted]`, in every
  spelling a page uses (plain, HTML-, JSON- and URL-escaped), also across chunk boundaries.

Secrets are also scrubbed where rows are stored; this is the dashboard's own guarantee.
"""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from pimainteno.dashboard import runtime
from pimainteno.dashboard.render import REDACTED
from pimainteno.queue import MAX_ID

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]

# Columns that hold no free text: the only ones a visitor may filter, facet, sort or search on.
# Anything else (error, journal, diff, detail, reason, steps, text, value, remote...) is refused,
# and so is a column added later until it is listed here.
_SAFE = """rowid id name project unit branch mode provider updated_at trigger failure_id started_at finished_at
duration_s status step proposal_id commit_sha pid head created_at llm_call_id run_id base_head added removed
sha kind author pushed_at push_ref reverted_by detected_at active_state result exit_code exit_status
invocation_id source heal requested_at outcome purpose model thread_id input_tokens cached_tokens
output_tokens reasoning_tokens prompt_bytes consumed_at key proof event target"""
SAFE_COLUMNS = frozenset(_SAFE.split())
_COLUMN_PARAMS = ("_facet", "_facet_array", "_facet_date", "_sort", "_sort_desc", "_filter_column", "_search_col")
_REFUSED_PARAMS = ("_where", "_search", "_through")  # free SQL, full-text search, filters through another table


def refusal(database: str | None, path: str, query: bytes) -> str | None:
    """Why a request may not run (one line), or None. Only table pages of the pimainteno database are
    limited (its `?sql=` page is root's alone, by Datasette's own permission)."""
    parts = path.lstrip("/").split("/")
    if database is None or len(parts) < 2 or unquote(parts[0]) != database:
        return None
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key.startswith(_REFUSED_PARAMS):
            return f"{key} is not offered on the pimainteno database (the SQL page is, for root)"
        if key.startswith("_filter_column") or key in _COLUMN_PARAMS:
            column = value
        elif key.startswith("_"):
            continue
        else:
            column = key.split("__", 1)[0]
        if column not in SAFE_COLUMNS:
            return (
                f"filtering, faceting or sorting on {column!r} is not offered: it holds free text that could "
                "reveal a secret; use the columns of ids, names, statuses and times"
            )
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        number = value.strip()
        if number.lstrip("-").isdigit() and number.isascii() and not -MAX_ID - 1 <= int(number) <= MAX_ID:
            return f"{key}: {number} is outside SQLite's integer range ({-MAX_ID - 1} to {MAX_ID})"
    return None


def spellings(secrets: list[str]) -> list[bytes]:
    """Each secret as it can appear in a response: plain, HTML-, JSON- and URL-escaped; longest first."""
    found = set()
    for s in secrets:
        found |= {s, html.escape(s), html.escape(s, quote=False), json.dumps(s)[1:-1], quote(s, safe=""), quote_plus(s)}
    return sorted((v.encode() for v in found if v), key=len, reverse=True)


def scrub(data: bytes, secrets: list[bytes]) -> bytes:
    for s in secrets:
        data = data.replace(s, REDACTED.encode())
    return data


async def _respond(send: Any, status: int, message: str) -> None:
    body = json.dumps({"ok": False, "error": message}).encode()
    headers = [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wrap(datasette: Any, app: App) -> App:
    async def guarded(scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            return await app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        authorization = headers.get("authorization", "")
        bearer = authorization.partition(" ")[0].lower() == "bearer"
        if bearer and runtime.actor_for_bearer(datasette, authorization) is None:
            return await _respond(send, 403, "the Bearer token is wrong: use [web] token or PIMAINTENO_WEB_TOKEN")
        refused = refusal(runtime.database_name(datasette), scope.get("path", ""), scope.get("query_string", b""))
        if refused:
            return await _respond(send, 400, refused)
        secrets = spellings(runtime.secrets(datasette))
        if not secrets:
            return await app(scope, receive, send)
        await app(scope, receive, _scrubbing(send, secrets))
        return None

    return guarded


def _scrubbing(send: Any, secrets: list[bytes]) -> Any:
    """`send` with secrets replaced in the body; the last len(longest)-1 bytes wait for the next chunk."""
    keep = max(len(s) for s in secrets) - 1
    carry = b""

    async def scrubbing_send(message: MutableMapping[str, Any]) -> None:
        nonlocal carry
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body":
            data = scrub(carry + message.get("body", b""), secrets)
            more = message.get("more_body", False)
            cut = max(len(data) - keep, 0) if more else len(data)
            carry, data = data[cut:], data[:cut]
            message = {**message, "body": data}
        await send(message)

    return scrubbing_send
