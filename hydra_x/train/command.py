"""The command line of every training family: a recipe, dotted overrides, the resolved config.

    python -m hydra_x.train.<family> --config RECIPE [KEY=VALUE ...] [--print-config]

Overrides reach any field (``steps=2000 data.image_size=128 optim.lr=1e-4``). A nested config with a
``replace`` method (a model config whose derived sizes follow what changes) gets its overrides through it, and
``KEY=NAME`` swaps such a config for the preset ``NAME`` (``model=small``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hydra_x.config import apply_overrides, parse_value

C = TypeVar("C")


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
    function (``{"model": tokenizer_config}``). Exits with argparse's usage error on a bad recipe or override."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=f"recipes: {', '.join(recipes)}")
    parser.add_argument("--config", default=default, help=f"a training recipe (default: {default})")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.config not in recipes:
        parser.error(f"unknown recipe {args.config!r}; choose one of {sorted(recipes)}")
    cfg = recipes[args.config]()
    presets = presets or {}
    plain: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    try:
        for item in args.overrides:
            key, sep, value = item.partition("=")
            if not sep:
                parser.error(f"overrides are KEY=VALUE, got {item!r}")
            head, _, rest = key.partition(".")
            if head in presets and not rest:
                setattr(cfg, head, presets[head](value))
            elif hasattr(getattr(cfg, head, None), "replace") and rest:
                nested.setdefault(head, {})[rest] = parse_value(value)
            else:
                plain[key] = parse_value(value)
        for head, changes in nested.items():
            setattr(cfg, head, getattr(cfg, head).replace(**changes))
        cfg = apply_overrides(cfg, plain)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        sys.exit(0)
    return cfg
