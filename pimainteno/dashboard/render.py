"""Turn text that came from a model or a repository into safe HTML: diffs, summaries, steps.

Everything is escaped first; only tags produced here are added afterwards, so no input can
inject markup. Secrets the dashboard knows about are replaced before anything is shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

REDACTED = "[redacted]"
DIFF_LINES = 400  # lines of a diff shown inline on the overview


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _diff_class(line: str) -> str:
    if line.startswith(("+++", "---", "diff ", "index ", "new file", "deleted file", "similarity", "rename ")):
        return "meta"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return "ctx"


def diff_html(diff: str | None, *, max_lines: int | None = DIFF_LINES) -> Markup:
    """A unified diff as a coloured, escaped <pre>."""
    if not diff:
        return Markup('<p class="pim-empty">(empty diff)</p>')
    lines = diff.splitlines()
    hidden = 0
    if max_lines is not None and len(lines) > max_lines:
        hidden = len(lines) - max_lines
        lines = lines[:max_lines]
    # One block per line (no newlines between them, or <pre> would double the line breaks).
    body = "".join(f'<span class="pim-{_diff_class(line)}">{escape(line)}</span>' for line in lines)
    more = f'<span class="pim-more">… {hidden} more lines</span>' if hidden else ""
    return Markup(f'<pre class="pim-diff">{body}{more}</pre>')


def pre(text: str | None) -> Markup:
    return Markup(f'<pre class="pim-pre">{escape(text or "")}</pre>')


_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")


def _inline(text: str) -> str:
    """Escape, then add <code> and <strong>; links stay plain text (no javascript: URLs)."""
    html = str(escape(text))
    html = _CODE.sub(r"<code>\1</code>", html)
    return _BOLD.sub(r"<strong>\1</strong>", html)


def markdown_html(text: str | None) -> Markup:
    """A small, safe subset of Markdown: headings, lists, code blocks, `code`, **bold**, paragraphs.

    Raw HTML in the input is shown as text, never interpreted.
    """
    out: list[str] = []
    para: list[str] = []
    code: list[str] | None = None
    list_tag: str | None = None

    def flush() -> None:
        nonlocal list_tag
        if para:
            out.append("<p>" + " ".join(para) + "</p>")
            para.clear()
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    for line in (text or "").splitlines():
        if code is not None:
            if line.strip().startswith("```"):
                out.append("<pre><code>" + str(escape("\n".join(code))) + "</code></pre>")
                code = None
            else:
                code.append(line)
            continue
        if line.strip().startswith("```"):
            flush()
            code = []
            continue
        if not line.strip():
            flush()
            continue
        heading = _HEADING.match(line)
        item = _BULLET.match(line) or _NUMBERED.match(line)
        if heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)  # the project's name is the page's h2
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif item:
            tag = "ul" if _BULLET.match(line) else "ol"
            if para or list_tag != tag:
                flush()
                out.append(f"<{tag}>")
                list_tag = tag
            out.append(f"<li>{_inline(item.group(1))}</li>")
        elif list_tag and line.startswith((" ", "\t")) and out[-1].endswith("</li>"):
            out[-1] = out[-1][: -len("</li>")] + " " + _inline(line.strip()) + "</li>"
        else:
            if list_tag:
                flush()
            para.append(_inline(line.strip()))
    if code is not None:
        out.append("<pre><code>" + str(escape("\n".join(code))) + "</code></pre>")
    flush()
    return Markup('<div class="pim-summary">' + "\n".join(out) + "</div>")


def parse_steps(raw: str | None) -> list[dict[str, Any]]:
    """runs.steps: a JSON list of {step, outcome, seconds, detail}; anything else shows as one step."""
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        return [{"step": "?", "outcome": "unreadable", "seconds": None, "detail": raw[:500]}]
    if not isinstance(data, list):
        return [{"step": "?", "outcome": "unreadable", "seconds": None, "detail": str(data)[:500]}]
    steps = []
    for item in data[:50]:
        if isinstance(item, dict):
            steps.append({k: item.get(k) for k in ("step", "outcome", "seconds", "detail")})
        else:
            steps.append({"step": str(item), "outcome": None, "seconds": None, "detail": None})
    return steps


def steps_html(raw: str | None) -> Markup:
    items = []
    for s in parse_steps(raw):
        took = f" {s['seconds']:.1f}s" if isinstance(s["seconds"], (int, float)) else ""
        detail = f' <span class="pim-detail">{escape(str(s["detail"]))}</span>' if s["detail"] else ""
        outcome = escape(str(s["outcome"] or ""))
        items.append(
            f'<li><span class="pim-step">{escape(str(s["step"]))}</span> '
            f'<span class="pim-outcome pim-{outcome}">{outcome}</span>{took}{detail}</li>'
        )
    return Markup('<ol class="pim-steps">' + "".join(items) + "</ol>")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def ago(value: str | None, now: datetime | None = None) -> str:
    """'3 min ago' for an ISO-8601 timestamp; '' when it cannot be read."""
    when = parse_time(value)
    if when is None:
        return ""
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def short_time(value: str | None) -> str:
    """2026-11-24T10:03:12.123Z -> 2026-11-24 10:03:12Z"""
    if not value:
        return ""
    return value.replace("T", " ").split(".")[0].rstrip("Z") + ("Z" if value.endswith("Z") else "")
