"""Helpers shared by every dataclass config: dict round trips and dotted overrides.

Configs are plain dataclasses next to the code that reads them. These helpers turn them into JSON-able
dicts and back (with a clear error for unknown keys), and apply ``a.b=value`` overrides from a command line.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a (possibly nested) dataclass config; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a JSON value back into the type a dataclass field declares (tuples, nested configs)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _coerce(value, non_none[0], where)
        return value
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return config_from_dict(annotation, value, where=where)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
        return tuple(value)
    if origin is dict and isinstance(value, dict):
        return dict(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def config_from_dict(cls: type[C], data: dict[str, Any], *, where: str = "config") -> C:
    """Build ``cls`` from a dict, refusing keys it does not know (a typo must not pass silently)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; known keys: {sorted(known)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def parse_value(text: str) -> Any:
    """Parse a command-line value: JSON where it parses (numbers, true/false/null, lists), else the string.

    ``"2,2"`` becomes ``[2, 2]`` so tuple fields can be set without brackets.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [parse_value(part) for part in text.split(",")]
    return text


def apply_overrides(config: C, overrides: dict[str, Any]) -> C:
    """Return a copy of ``config`` with dotted-key overrides applied, e.g. ``{"model.width": 256}``."""
    data = dataclasses.asdict(config)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {dotted!r}: {part!r} is not a nested config")
            node = node[part]
        if parts[-1] not in node:
            raise ValueError(f"override {dotted!r}: unknown key {parts[-1]!r}; known: {sorted(node)}")
        node[parts[-1]] = value
    return config_from_dict(type(config), data)
