"""The schema as people read it: docs/configuration.md's tables and the example file's comments.

Both are rendered from `schema.py` by cog (`make docs`; `make lint` checks they are current), so a
default or a meaning is never written down by hand a second time.
"""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from pimainteno.config.check import hints
from pimainteno.config.schema import File, Project


def section(name: str) -> type:
    """The schema class of a table: `llm`, `systemd_monitor`, `project`, `project.sandbox`, ..."""
    cls: type = File
    for part in name.split("."):
        tp = hints(cls)[part]
        # a list of tables ([[project]]) or an optional table ([replicate]): the table's class
        cls = typing.get_args(tp)[0] if typing.get_origin(tp) in (tuple, types.UnionType) else tp
    return cls


def toml(value: Any) -> str:
    """A default as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Path):
        return json.dumps(str(value))
    return json.dumps(value)


def default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def default_text(f: dataclasses.Field[Any]) -> str:
    """The default as the docs show it."""
    if f.metadata.get("shown"):
        return str(f.metadata["shown"])
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return "required"
    value = default(f)
    return "unset" if value is None else f"`{toml(value)}`"


def meaning(f: dataclasses.Field[Any]) -> str:
    aliases = f.metadata.get("aliases", ())
    alias_text = f" (alias {', '.join(f'`{a}`' for a in aliases)})" if aliases else ""
    return str(f.metadata["doc"]) + alias_text


def table(name: str) -> str:
    """The markdown table of one configuration table: key, default, meaning."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(section(name)):
        cell = meaning(f).replace("|", "\\|")
        rows.append(f"| `{f.name}` | {default_text(f)} | {cell} |")
    return "\n".join(rows) + "\n"


def _comment(text: str, width: int = 100) -> list[str]:
    plain = re.sub(r"`([^`]*)`", r"\1", text)
    return textwrap.wrap(plain, width - 2, initial_indent="# ", subsequent_indent="# ")


def example(name: str, values: dict[str, Any] | None = None, *, header: str | None = None) -> str:
    """One table of the example file: every key with its meaning, commented out at its default
    unless `values` sets it. A table with no values set is commented out whole."""
    values = values or {}
    head = header or f"[{name}]"
    lines = [head if values else f"# {head}"]
    for f in dataclasses.fields(section(name)):
        tp = hints(section(name))[f.name]
        if dataclasses.is_dataclass(tp) or f.name in ("project",):
            continue  # a sub-table, rendered as its own table
        value = default(f)
        # a default that depends on the machine (`shown`) is shown by its example, not this machine's value
        unset = (
            value in (None, "") or value is dataclasses.MISSING or bool(f.metadata.get("shown"))
        ) and f.metadata.get("example") is not None
        note = f" (default: {default_text(f)})" if unset or f.metadata.get("shown") else ""
        note = " (required)" if value is dataclasses.MISSING else note
        lines += _comment(meaning(f) + note)
        if f.name in values:
            lines.append(f"{f.name} = {toml(values[f.name])}")
        else:
            lines.append(f"# {f.name} = {toml(f.metadata['example'] if unset else value)}")
    return "\n".join(lines) + "\n"


def keys() -> list[tuple[str, str, str]]:
    """Every (table, key, default as documented), for the test that the docs list them all."""
    out = []
    for top in dataclasses.fields(File):
        if top.name == "project":
            continue
        out += [(top.name, f.name, default_text(f)) for f in dataclasses.fields(section(top.name))]
    out += [("project", f.name, default_text(f)) for f in dataclasses.fields(Project)]
    out += [("project.sandbox", f.name, default_text(f)) for f in dataclasses.fields(section("project.sandbox"))]
    return out


# The example file's tables in order, with the seed's names ([cache] for [database]).
EXAMPLE_TABLES = (
    ("llm", "[llm]"), ("database", "[cache]"), ("state", "[state]"), ("queue", "[queue]"),
    ("scheduler", "[scheduler]"), ("systemd_monitor", "[systemd_monitor]"), ("web", "[web]"), ("git", "[git]"),
    ("notify", "[notify]"), ("policy", "[policy]"), ("replicate", "[replicate]"), ("project", "[[project]]"),
    ("project.sandbox", "[project.sandbox]"),
)  # fmt: skip


def example_file(values: dict[str, dict[str, Any]]) -> str:
    """Every table and key, commented at its default unless `values` (table -> key -> value) sets it."""
    return "\n".join(example(name, values.get(name), header=header) for name, header in EXAMPLE_TABLES)
