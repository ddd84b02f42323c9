"""Image teachers: SigLIP 2 (NaFlex), SigLIP (also the fixed-resolution SigLIP 2 checkpoints), DINOv2.

Each takes pixels (B, 3, H, W) in [-1, 1] and returns tokens (B, h * w, D) on the grid (h, w):
- SigLIP 2 NaFlex (``Siglip2VisionModel``) runs at the input's own size rounded to the patch (its position
  embedding is resized to any grid), or at a fixed ``image_size``; ``max_num_patches`` caps the token count
  by shrinking the image with its aspect kept, as the NaFlex processor does.
- SigLIP (``SiglipVisionModel``) runs at its config's ``image_size`` unless told otherwise (then its
  position embedding is interpolated).
- DINOv2 (``Dinov2Model`` / ``Dinov2WithRegistersModel``) runs at the input size rounded to its patch
  (14) unless ``image_size`` is given; its CLS and register tokens are dropped.
Normalisation: SigLIP's 0.5 / 0.5 (so [-1, 1] pixels pass unchanged), DINOv2's ImageNet statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from hydra_x.hf import SIGLIP_MEAN, SIGLIP_STD, auto_config
from hydra_x.teachers.base import (
    FrozenTeacher,
    TeacherOutput,
    as_pair,
    resize,
    round_to_patch,
)


class ImageTeacher(FrozenTeacher):
    """An image teacher with a configurable working resolution (None: the family's default)."""

    def __init__(self, model: torch.nn.Module, *, image_size: int | Sequence[int] | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.image_size = as_pair(image_size) if image_size is not None else None

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The resolution the model runs at, for an input of ``size``."""
        return self.image_size or round_to_patch(size, self.patch_size)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        size = self.target_size((x.shape[-2], x.shape[-1]))
        return self.normalize(resize(x.float(), size)).to(self.dtype)  # (B, 3, H', W')

    def _hidden(self, out, layers: tuple[int, ...], drop: int = 0) -> dict[int, torch.Tensor]:
        return {k: out.hidden_states[k][:, drop:] for k in layers}


class SiglipTeacher(ImageTeacher):
    kind = "siglip"
    model_types = ("siglip", "siglip_vision_model")
    default_mean, default_std = SIGLIP_MEAN, SIGLIP_STD

    @classmethod
    def model_class(cls, config) -> type:
        from transformers import SiglipVisionModel

        return SiglipVisionModel

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return self.image_size or as_pair(self.config.image_size)

    def _forward(self, x: torch.Tensor, layers: tuple[int, ...]) -> TeacherOutput:
        p = self.patch_size
        native = tuple(x.shape[-2:]) == as_pair(self.config.image_size)
        out = self.model(pixel_values=x, interpolate_pos_encoding=not native, output_hidden_states=bool(layers))
        return TeacherOutput(out.last_hidden_state, (x.shape[-2] // p, x.shape[-1] // p), self._hidden(out, layers))


class Siglip2Teacher(ImageTeacher):
    """SigLIP 2 NaFlex: the model takes flattened patches, a patch mask and each image's grid."""

    kind = "siglip2"
    model_types = ("siglip2", "siglip2_vision_model")
    default_mean, default_std = SIGLIP_MEAN, SIGLIP_STD

    def __init__(self, model: torch.nn.Module, *, max_num_patches: int | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.max_num_patches = max_num_patches

    @classmethod
    def model_class(cls, config) -> type:
        from transformers import Siglip2VisionModel

        return Siglip2VisionModel

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        if self.image_size is not None:
            return self.image_size
        p, budget = self.patch_size, self.max_num_patches
        h, w = round_to_patch(size, p)
        if not budget or (h // p) * (w // p) <= budget:
            return h, w
        # Too many patches: the largest scale whose patch grid fits the budget (as the NaFlex processor
        # searches it, sides rounded up to the patch); unlike the processor, never upscale a small image.
        cells = lambda s: (max(1, math.ceil(size[0] * s / p)), max(1, math.ceil(size[1] * s / p)))
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if math.prod(cells(mid)) <= budget else (lo, mid)
        gh, gw = cells(lo)
        return gh * p, gw * p

    def _forward(self, x: torch.Tensor, layers: tuple[int, ...]) -> TeacherOutput:
        p = self.patch_size
        b, _, hh, ww = x.shape
        grid = (hh // p, ww // p)
        # The NaFlex processor flattens each patch as (row, column, channel).
        patches = rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)  # (B, N, p * p * 3)
        out = self.model(
            pixel_values=patches,
            # No padding: no mask, so SDPA keeps its flash kernels (transformers skips an all-ones mask only after
            # checking it, a host sync, and never under torch.compile).
            pixel_attention_mask=None,
            # On the CPU: the model reads each row with .tolist(), which on a GPU tensor waits for the GPU
            # (a host sync per image, every step); nothing else uses it.
            spatial_shapes=torch.tensor([grid] * b, dtype=torch.long),
            output_hidden_states=bool(layers),
        )
        return TeacherOutput(out.last_hidden_state, grid, self._hidden(out, layers))


class Dinov2Teacher(ImageTeacher):
    kind = "dinov2"
    model_types = ("dinov2", "dinov2_with_registers")

    @classmethod
    def model_class(cls, config) -> type:
        from transformers import Dinov2Model, Dinov2WithRegistersModel

        return Dinov2WithRegistersModel if config.model_type == "dinov2_with_registers" else Dinov2Model

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + getattr(self.config, "num_register_tokens", 0)  # CLS, then the registers

    def _forward(self, x: torch.Tensor, layers: tuple[int, ...]) -> TeacherOutput:
        p, drop = self.patch_size, self.num_prefix_tokens
        out = self.model(pixel_values=x, output_hidden_states=bool(layers))
        grid = (x.shape[-2] // p, x.shape[-1] // p)
        return TeacherOutput(out.last_hidden_state[:, drop:], grid, self._hidden(out, layers, drop))


def load_siglip2(name_or_path: str | Path, **kwargs: Any) -> SiglipTeacher | Siglip2Teacher:
    """A SigLIP 2 teacher: NaFlex checkpoints are ``siglip2``; the fixed-resolution ones are ``siglip``."""
    hub = {k: kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs}
    config = auto_config(name_or_path, **hub)
    if SiglipTeacher.accepts(config):
        kwargs.pop("max_num_patches", None)
        return SiglipTeacher.from_pretrained(name_or_path, **kwargs)
    return Siglip2Teacher.from_pretrained(name_or_path, **kwargs)


def load_siglip(name_or_path: str | Path, **kwargs: Any) -> SiglipTeacher:
    return SiglipTeacher.from_pretrained(name_or_path, **kwargs)


def load_dinov2(name_or_path: str | Path, **kwargs: Any) -> Dinov2Teacher:
    return Dinov2Teacher.from_pretrained(name_or_path, **kwargs)
