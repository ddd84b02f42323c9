"""InternViT (InternVL's vision tower) through transformers: the loader and the frozen teacher of HYDRA-TOK.

Two checkpoint forms load, by Hub id or local folder:
- a vision tower alone (``InternVLVisionModel``, model_type ``internvl_vision``);
- a full InternVL ``-hf`` checkpoint (model_type ``internvl``, e.g. ``OpenGVLab/InternVL3-1B-hf``): only its
  vision tower is read, and only the safetensors shards that hold it are fetched (not the language model).
The original remote-code checkpoints (``OpenGVLab/InternViT-300M-448px*``, model_type ``intern_vit_6b`` or
``internvl_chat``) need ``trust_remote_code`` and are not supported: a clear error says to use the ``-hf`` ones.

The teacher returns the tower's patch tokens (CLS dropped): ``tokens`` after the final norm (an identity for
the mean-pooling InternViT-300M), ``hidden[k]`` = transformers' ``hidden_states[k]`` (0 the embeddings, k
after layer k) for the layers it is asked for, as multi-layer distillation needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hydra_x.teachers.base import IMAGENET_MEAN, IMAGENET_STD, TeacherOutput
from hydra_x.teachers.image import ImageTeacher

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

    from hydra_x.teachers.base import load_frozen_model

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


class InternViTTeacher(ImageTeacher):
    """Frozen InternViT; runs at the input's size rounded to the patch (14) unless ``image_size`` is set.

    InternVL normalises with the ImageNet statistics; its position embedding is resized (bicubic) by the
    model itself to any grid.
    """

    kind = "internvit"
    model_types = VISION_TYPES
    default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD

    @classmethod
    def load_model(
        cls, name_or_path: str | Path, dtype: torch.dtype, attn_implementation: str | None, hub: dict[str, Any]
    ) -> torch.nn.Module:
        # A vision tower or a full InternVL checkpoint, whose vision tensors alone are read.
        return load_internvl_vision(name_or_path, dtype=dtype, attn_implementation=attn_implementation, **hub)

    def _forward(self, x: torch.Tensor, layers: tuple[int, ...]) -> TeacherOutput:
        p = self.patch_size
        out = self.model(pixel_values=x, output_hidden_states=bool(layers))
        grid = (x.shape[-2] // p, x.shape[-1] // p)
        return TeacherOutput(out.last_hidden_state[:, 1:], grid, self._hidden(out, layers, drop=1))


def load_internvit(name_or_path: str | Path, **kwargs: Any) -> InternViTTeacher:
    return InternViTTeacher.from_pretrained(name_or_path, **kwargs)
