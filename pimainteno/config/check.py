"""Check raw TOML/JSON data against the schema and build the typed objects, or fail in one line.

Driven entirely by the dataclasses in `schema.py`: a key's annotation is its type, its `key()`
metadata its bounds, aliases and the phrase an error uses. Errors name the file and the key
(`project[0].retries`), say what was expected and, for an unknown key, the nearest known one.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pimainteno.errors import ConfigError

_CONTROL = {*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)}


class Refused(Exception):
    """A value does not fit; `expected` says what would."""

    def __init__(self, expected: str):
        self.expected = expected


def control_character(text: str) -> str | None:
    """The first control character in text (newline, CR, NUL, other C0/C1), as U+XXXX, or None."""
    return next((f"U+{ord(c):04X}" for c in text if ord(c) in _CONTROL), None)


def refuse_control_characters(file: str, data: Any, where: str = "") -> None:
    """Control characters can end a line in a rendered unit, hook or trigger: refuse them everywhere."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        name = _quoted(k) if isinstance(k, str) and control_character(k) else k  # never echo the character
        here = f"{where}[{k}]" if isinstance(k, int) else (f"{where}.{name}" if where else str(name))
        for text in (k, v):
            bad = control_character(text) if isinstance(text, str) else None
            if bad:
                raise ConfigError(f"{file}: {here}: control character {bad} is not allowed; remove it")
        refuse_control_characters(file, v, here)


@cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def kind(v: Any) -> str:
    names = {dict: "a table", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(v), type(v).__name__)


def _quoted(text: str) -> str:
    import json  # only for error messages

    return json.dumps(text)


def show(v: Any) -> str:
    import json  # only for error messages

    text = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(tp: Any) -> str:
    """What a type accepts, in the words of an error message."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin is tuple:
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    named = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    return named.get(tp, "a table")


def convert(tp: Any, v: Any, where: str, file: str, bases: dict[type, Any]) -> Any:
    """v as type tp, or Refused."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return v
    if origin is Literal:
        if isinstance(v, str) and v in args:
            return v
        raise Refused(describe(tp))
    if origin in (types.UnionType, typing.Union):
        for member in args:
            try:
                return convert(member, v, where, file, bases)
            except Refused:
                continue
        raise Refused(describe(tp))
    if tp is type(None):
        if v is None:
            return None
        raise Refused("null")
    if tp is bool or tp is str:
        if isinstance(v, tp):
            return v
        raise Refused(describe(tp))
    if tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        raise Refused("an integer")
    if tp is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
        raise Refused("a number")
    if tp is Path:
        if isinstance(v, str) and v:
            return Path(v)
        raise Refused("a path")
    if origin is tuple:
        if not isinstance(v, list):
            raise Refused(describe(tp))
        items = []
        for i, x in enumerate(v):
            try:
                items.append(convert(args[0], x, f"{where}[{i}]", file, bases))
            except Refused as e:  # name the item, not the whole list
                raise ConfigError(f"{file}: {where}[{i}]: expected {e.expected}, got {show(x)}") from None
        return tuple(items)
    if origin is dict or tp is dict:
        if isinstance(v, dict):
            return v
        raise Refused("a table")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(v, dict):
            raise Refused("a table")
        return build(tp, v, where, file, bases)
    raise TypeError(f"the configuration schema uses an unsupported type {tp!r}")  # a bug in schema.py


def build(cls: type, data: dict[str, Any], where: str, file: str, bases: dict[type, Any] | None = None) -> Any:
    """An instance of the schema class cls from one table; keys missing take the defaults (or bases[cls]'s)."""
    bases = bases or {}
    known = fields(cls)
    data = {k: v for k, v in data.items() if v is not None}  # JSON null: unset
    for name, f in known.items():
        for alias in f.metadata.get("aliases", ()):
            if alias in data:
                if name in data:
                    raise ConfigError(f"{file}: {_at(where, alias)}: give `{name}` or `{alias}`, not both")
                data[name] = data.pop(alias)
    for k in data:
        if k not in known:
            names = [*known, *(a for f in known.values() for a in f.metadata.get("aliases", ()))]
            import difflib  # only for the error

            near = difflib.get_close_matches(k, names, n=1)
            hint = f"; did you mean `{near[0]}`?" if near else "; see docs/configuration.md for the keys"
            raise ConfigError(f"{file}: unknown key {_at(where, k)!r}{hint}")
    values = {}
    for name, f in known.items():
        here, tp, meta = _at(where, name), hints(cls)[name], f.metadata
        if name not in data:
            if dataclasses.is_dataclass(tp) and tp in bases:
                values[name] = bases[tp]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{file}: {here}: expected {meta.get('expected') or describe(tp)}, got nothing")
            continue
        raw = data[name]
        said = "a value not repeated here (it may hold a secret)" if meta.get("secret") or not f.repr else None
        if isinstance(raw, str) and raw in meta.get("refused", {}):
            raise ConfigError(f"{file}: {here}: {meta['refused'][raw]}")
        if meta.get("coerce"):
            raw = meta["coerce"](raw)
        try:
            value = convert(tp, raw, here, file, bases)
        except Refused as e:
            raise ConfigError(
                f"{file}: {here}: expected {meta.get('expected') or e.expected}, got {said or show(raw)}"
            ) from None
        problem = _bounds(value, meta) or (meta["check"](value) if meta.get("check") else None)
        if problem:
            raise ConfigError(f"{file}: {here}: expected {meta.get('expected') or problem}, got {said or show(raw)}")
        values[name] = value
    if cls in bases:
        return dataclasses.replace(bases[cls], **values)
    return cls(**values)


def _bounds(value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    ge, le = meta.get("ge"), meta.get("le")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    what = "a number" if isinstance(value, float) else "an integer"
    if ge is not None and value < ge:
        return f"{what} >= {ge:g}"
    if le is not None and value > le:
        return f"{what} <= {le:g}"
    return None


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
