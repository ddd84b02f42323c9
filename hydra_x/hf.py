"""Loading helpers for Hugging Face models, shared by the tokenizer's starts, the teachers and the unified model.

- ``hub_kwargs``: the Hub options every ``from_pretrained`` here takes (revision, cache_dir, token, offline).
- ``load_frozen_model``: ``from_pretrained`` that refuses to leave any weight randomly initialised.
- InternVL's vision tower from a tower checkpoint or from a full InternVL ``-hf`` checkpoint (only the vision
  shards are read): HYDRA-TOK starts from it and distils from it.
- The pixel statistics of the processors (ImageNet's, SigLIP's).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)  # with SigLIP's std of 0.5 this maps [-1, 1] pixels to themselves
SIGLIP_STD = (0.5, 0.5, 0.5)


def hub_kwargs(
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> dict[str, Any]:
    hub = {k: v for k, v in dict(revision=revision, cache_dir=cache_dir, token=token).items() if v is not None}
    if local_files_only:
        hub["local_files_only"] = True
    return hub


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No per-shard progress bar from transformers while loading weights (commands keep stderr to one line per
    problem; a test reads it)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def auto_config(name_or_path: str | Path, **hub: Any):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(name_or_path), **hub)


def load_frozen_model(model_cls: type, name_or_path: str | Path, dtype: torch.dtype, **kwargs: Any):
    """``model_cls.from_pretrained`` that refuses to leave any weight randomly initialised.

    transformers fills missing weights with random values and only logs it; for a teacher that would
    silently distill noise. Unexpected keys are fine: a full checkpoint (e.g. SigLIP 2 with its text
    tower) loads into the vision-only class and the rest is dropped.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report would list every dropped text-tower key
    try:
        model, info = model_cls.from_pretrained(
            str(name_or_path), dtype=dtype, use_safetensors=True, output_loading_info=True, **kwargs
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
        raise ValueError(f"{name_or_path}: the checkpoint lacks weights of {model_cls.__name__}: {shown}")
    dropped = len(info.get("unexpected_keys") or [])
    if dropped:
        log.info("%s: kept %s, dropped %d other tensors of the checkpoint", name_or_path, model_cls.__name__, dropped)
    return model


VISION_TYPES = ("internvl_vision", "internvl")
REMOTE_CODE_TYPES = ("intern_vit_6b", "internvl_chat", "internvit")  # the trust_remote_code originals
_ANCHOR = "embeddings.patch_embeddings.projection.weight"


def read_internvl_vision_config(name_or_path: str | Path, **hub: Any):
    """(model_type, ``InternVLVisionConfig``) of a tower or of a full InternVL checkpoint; clear errors otherwise.

    The raw config.json is read first: asking AutoConfig about a remote-code checkpoint would prompt for
    ``trust_remote_code`` instead of failing.
    """
    from transformers import AutoConfig, PretrainedConfig

    try:
        raw, _ = PretrainedConfig.get_config_dict(str(name_or_path), **hub)
    except OSError as err:
        raise OSError(
            f"cannot read the InternVL checkpoint {name_or_path!r} ({err}); pass a Hub id that can be downloaded "
            "or a local folder holding config.json and the safetensors weights"
        ) from err
    model_type = raw.get("model_type")
    if model_type in REMOTE_CODE_TYPES or (model_type not in VISION_TYPES and "auto_map" in raw):
        raise ValueError(
            f"{name_or_path} is a remote-code InternViT / InternVL checkpoint (model_type {model_type!r}, needs "
            "trust_remote_code), which is not supported; use a transformers-native '-hf' checkpoint such as "
            "OpenGVLab/InternVL3-1B-hf (model_type 'internvl') or an InternVLVisionModel folder ('internvl_vision')"
        )
    if model_type not in VISION_TYPES:
        raise ValueError(
            f"{name_or_path} is a {model_type!r} checkpoint; expected an InternVL vision tower ('internvl_vision') "
            "or a full InternVL '-hf' checkpoint ('internvl')"
        )
    config = AutoConfig.from_pretrained(str(name_or_path), **hub)
    return model_type, config if model_type == "internvl_vision" else config.vision_config


def _vision_files(name_or_path: str | Path, **hub: Any) -> list[str]:
    """The safetensors files of a full checkpoint that hold vision-tower weights (one file, or the shards)."""
    from transformers.utils import cached_file

    index = cached_file(
        str(name_or_path), "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False, **hub
    )
    if index is None:
        return [cached_file(str(name_or_path), "model.safetensors", **hub)]
    weight_map: dict[str, str] = json.loads(Path(index).read_text())["weight_map"]
    shards = sorted({f for k, f in weight_map.items() if "vision_tower." in k or "vision_model." in k})
    if not shards:
        raise ValueError(f"{name_or_path}: its safetensors index names no vision-tower weight")
    return [cached_file(str(name_or_path), shard, **hub) for shard in shards]


def _read_vision_state(name_or_path: str | Path, **hub: Any) -> dict[str, torch.Tensor]:
    """The vision tower's tensors of a full InternVL checkpoint, prefix stripped."""
    from safetensors import safe_open

    files = _vision_files(name_or_path, **hub)
    keys: set[str] = set()
    for file in files:
        with safe_open(file, framework="pt") as f:
            keys.update(f.keys())
    # The tower's prefix differs across transformers versions ("vision_tower." or "model.vision_tower.").
    anchor = next((k for k in keys if k.endswith(_ANCHOR) and "vision" in k), None)
    if anchor is None:
        raise ValueError(f"{name_or_path}: no InternVL vision tower ({_ANCHOR}) found in its weights")
    prefix = anchor[: -len(_ANCHOR)]
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            names = f.keys()  # a safe_open handle is not iterable
            state.update({k[len(prefix) :]: f.get_tensor(k) for k in names if k.startswith(prefix)})
    return state


def load_internvl_vision(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
    **hub: Any,
):
    """An ``InternVLVisionModel`` with every weight from the checkpoint (a missing one is an error)."""
    from transformers import InternVLVisionModel

    model_type, vision_config = read_internvl_vision_config(name_or_path, **hub)
    if model_type == "internvl_vision":
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        return load_frozen_model(InternVLVisionModel, name_or_path, dtype, **hub, **extra)
    # A full checkpoint: build the tower alone and fill it from the vision tensors of the shards.
    if attn_implementation is not None:
        vision_config._attn_implementation = attn_implementation
    with torch.device("meta"):  # no random init of weights that are all overwritten
        model = InternVLVisionModel(vision_config)
    state = _read_vision_state(name_or_path, **hub)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(
            f"{name_or_path}: the vision tower's weights do not match InternVLVisionModel: missing "
            f"{sorted(missing)[:10]}, unexpected {sorted(unexpected)[:10]}"
        )
    return model.to(dtype)
