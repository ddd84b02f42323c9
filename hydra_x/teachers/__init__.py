"""Frozen teachers for distillation: image (SigLIP 2, SigLIP, DINOv2) and video (V-JEPA 2, VideoMAE).

    teacher = load_teacher("google/siglip2-so400m-patch16-naflex")     # kind from the config's model_type
    out = teacher(x)                 # x (B, 3, H, W) in [-1, 1] -> out.tokens (B, N, D), out.grid (h, w)
    video = load_teacher("facebook/vjepa2-vitl-fpc64-256", kind="vjepa2")
    out = video(clip[:, :, 1:])      # (B, 3, T, H, W) -> out.tokens (B, T / 2, N, D), out.grid (T / 2, h, w)

Offline tests build tiny random-weight checkpoints with ``save_tiny_teacher`` (labelled, and warned about
when loaded). Any other encoder plugs in the same way: a callable that maps pixels to a ``TeacherOutput`` and has
``dim``, ``patch_size`` (and ``tubelet_size`` for videos); add its loader to ``TEACHERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra_x.hf import hub_kwargs
from hydra_x.teachers.base import FrozenTeacher, TeacherOutput
from hydra_x.teachers.image import (
    Dinov2Teacher,
    Siglip2Teacher,
    SiglipTeacher,
    load_dinov2,
    load_siglip,
    load_siglip2,
)
from hydra_x.teachers.internvit import InternViTTeacher, load_internvit
from hydra_x.teachers.tiny import save_tiny_teacher
from hydra_x.teachers.video import VideoMAETeacher, VJEPA2Teacher, load_videomae, load_vjepa2

TEACHERS: dict[str, Callable[..., FrozenTeacher]] = {
    "siglip2": load_siglip2,
    "siglip": load_siglip,
    "dinov2": load_dinov2,
    "vjepa2": load_vjepa2,
    "videomae": load_videomae,
    "internvit": load_internvit,
}

# config.model_type -> kind. A full SigLIP / SigLIP 2 checkpoint (with a text tower) has the bare family
# name; the vision-only classes have the *_vision_model names. Fixed-resolution SigLIP 2 checkpoints are
# plain "siglip" models.
MODEL_TYPE_KINDS = {
    "siglip2": "siglip2",
    "siglip2_vision_model": "siglip2",
    "siglip": "siglip",
    "siglip_vision_model": "siglip",
    "dinov2": "dinov2",
    "dinov2_with_registers": "dinov2",
    "vjepa2": "vjepa2",
    "videomae": "videomae",
    # InternVL's vision tower (HYDRA-TOK); the remote-code originals map here so its loader names the problem.
    "internvl_vision": "internvit",
    "internvl": "internvit",
    "intern_vit_6b": "internvit",
    "internvl_chat": "internvit",
}


def detect_kind(name_or_path: str | Path, **hub: Any) -> str:
    """The teacher kind of a checkpoint, from its config's ``model_type``."""
    from transformers import PretrainedConfig

    # The raw config.json: AutoConfig would prompt for trust_remote_code on a remote-code checkpoint.
    try:
        model_type = PretrainedConfig.get_config_dict(str(name_or_path), **hub)[0].get("model_type")
    except OSError as err:
        raise OSError(
            f"cannot read the teacher checkpoint {name_or_path!r} ({err}); pass a Hub id that can be downloaded "
            "or a local folder holding config.json and the safetensors weights"
        ) from err
    if model_type not in MODEL_TYPE_KINDS:
        raise ValueError(
            f"{name_or_path} is a {model_type!r} checkpoint, which no teacher adapter takes; supported kinds: "
            f"{', '.join(TEACHERS)} (model types {', '.join(MODEL_TYPE_KINDS)})"
        )
    return MODEL_TYPE_KINDS[model_type]


def load_teacher(name_or_path: str | Path, kind: str | None = None, **kwargs: Any) -> FrozenTeacher:
    """A frozen teacher from a Hub id or a local folder.

    ``kind`` (one of ``TEACHERS``) is detected from the checkpoint when None. ``kwargs``: dtype (default
    bf16), device, revision, cache_dir, token, local_files_only, attn_implementation, and the adapter's
    options (image_size, mean, std, layers, inference_mode; max_num_patches for SigLIP 2; num_frames for
    videos).
    """
    if kind is None:
        hub = hub_kwargs(
            *(kwargs.get(k) for k in ("revision", "cache_dir", "token")), bool(kwargs.get("local_files_only"))
        )
        kind = detect_kind(name_or_path, **hub)
    if kind not in TEACHERS:
        raise ValueError(f"unknown teacher kind {kind!r}; supported kinds: {', '.join(TEACHERS)}")
    return TEACHERS[kind](name_or_path, **kwargs)


__all__ = [
    "Dinov2Teacher",
    "FrozenTeacher",
    "InternViTTeacher",
    "MODEL_TYPE_KINDS",
    "Siglip2Teacher",
    "SiglipTeacher",
    "TEACHERS",
    "TeacherOutput",
    "VJEPA2Teacher",
    "VideoMAETeacher",
    "detect_kind",
    "load_teacher",
    "save_tiny_teacher",
]
