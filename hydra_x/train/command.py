"""The command line of every training family: a recipe, dotted overrides, the resolved config.

    python -m hydra_x.train.<family> --config RECIPE [KEY=VALUE ...] [--print-config]

Overrides reach any field (``steps=2000 data.image_size=128 optim.lr=1e-4``). A nested config with a
``replace`` method (a model config whose derived sizes follow what changes) gets its overrides through it, and
``KEY=NAME`` swaps such a config for the preset ``NAME`` (``model=small``). A value must suit the field's
declared type (``steps=abc`` is refused, naming the field); a text field takes the text as written.

Usage errors (an unknown recipe, a bad override) print one line ``PROG: error: ...`` on stderr and exit with 2,
the error contract of every hydra-x command (hydra_x.cli.common).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from hydra_x.config import apply_overrides, parse_value

C = TypeVar("C")

# What each plain field type accepts, as the error names it.
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


class TrainParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (no usage block), like every hydra-x command's."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def parse_train_args(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    recipes: dict[str, Callable[[], C]],
    default: str,
    presets: dict[str, Callable[[str], Any]] | None = None,
) -> C:
    """The config of ``--config`` with the overrides applied; ``presets`` maps a nested field to its preset
    function (``{"model": tokenizer_config}``). Exits with a one-line usage error (2) on a bad recipe or override."""
    parser = TrainParser(prog=prog, description=description, epilog=f"recipes: {', '.join(recipes)}")
    parser.add_argument("--config", default=default, help=f"a training recipe (default: {default})")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.config not in recipes:
        parser.error(f"unknown recipe {args.config!r}; choose one of {sorted(recipes)}")
    try:
        cfg = override(recipes[args.config](), args.overrides, presets)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        sys.exit(0)
    return cfg


def override(cfg: Any, items: list[str], presets: dict[str, Callable[[str], Any]] | None = None) -> Any:
    """``cfg`` with the command line's ``KEY=VALUE`` items applied (as :func:`parse_train_args` does); a
    ValueError or TypeError names the item that does not fit."""
    presets = presets or {}
    plain: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"overrides are KEY=VALUE, got {item!r}")
        head, _, rest = key.partition(".")
        if head in presets and not rest:
            setattr(cfg, head, presets[head](value))
        elif hasattr(getattr(cfg, head, None), "replace") and rest:
            nested.setdefault(head, {})[rest] = typed_value(cfg, key, value)
        else:
            plain[key] = typed_value(cfg, key, value)
    for head, changes in nested.items():
        setattr(cfg, head, getattr(cfg, head).replace(**changes))
    return apply_overrides(cfg, plain)


def typed_value(cfg: Any, key: str, text: str) -> Any:
    """The value of the override ``key=text`` for the field it names: parsed (JSON where it parses), checked
    against the field's plain declared type (bool, int, float, str, or one of them or None); other types
    (tuples, nested configs) are left to the config. ValueError naming the key when the value does not fit."""
    value = parse_value(text)
    options = _plain_types(_field_type(cfg, key))
    if options is None:
        return value
    types_, nullable = options
    if value is None and nullable:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    for t in types_:
        if (t is bool and isinstance(value, bool)) or (t is int and number and isinstance(value, int)):
            return value
        if t is float and number:
            return float(value)
        if t is float and isinstance(value, str):
            try:
                return float(text)  # inf, nan
            except ValueError:
                pass
    if str in types_:
        return text  # a text field takes the text as written ("init=123" is a path)
    wanted = " or ".join(_TYPE_NAMES[t] for t in types_) + (" or null" if nullable else "")
    raise ValueError(f"{key}={text}: {key} takes {wanted}")


def _field_type(cfg: Any, key: str) -> Any:
    """The declared type of the dataclass field a dotted key names, or None when it names none."""
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = getattr(node, part, None)
    if not dataclasses.is_dataclass(node):
        return None
    return typing.get_type_hints(type(node)).get(leaf)


def _plain_types(annotation: Any) -> tuple[list[type], bool] | None:
    """(the plain types a field accepts, whether None is one of them), or None for any other annotation."""
    if annotation is None:
        return None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
    else:
        members = (annotation,)
    plain = [m for m in members if m is not type(None)]
    if not plain or any(m not in _TYPE_NAMES for m in plain):
        return None
    return plain, len(plain) < len(members)
