"""Which unified checkpoint the web app serves: the one given, else the demo's export.

``DEFAULT_DEMO_CHECKPOINT`` is the one place that names where ``hydra-x demo`` writes its unified model.
"""

from __future__ import annotations

from pathlib import Path

from hydra_x.errors import InputError

DEFAULT_DEMO_CHECKPOINT = Path("runs/demo/unified/export")  # relative to the folder the command runs in


def resolve_checkpoint(ckpt: str | None) -> str:
    """``ckpt`` as given (a folder or a Hub id: loading says if it is not one), else the demo's export, which must
    exist: a missing default is the usual first-run mistake, so the error says how to make it."""
    if ckpt:
        return ckpt
    if not (DEFAULT_DEMO_CHECKPOINT / "config.json").is_file():
        raise InputError(
            f"no checkpoint at {DEFAULT_DEMO_CHECKPOINT} (the default: the demo's unified model, relative to "
            f"{Path.cwd()}); run 'hydra-x demo' first, or pass --ckpt DIR_OR_HUB_ID (a folder written by "
            "HydraX.save_pretrained)"
        )
    return str(DEFAULT_DEMO_CHECKPOINT)
