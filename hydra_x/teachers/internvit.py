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

from pathlib import Path
from typing import Any

import torch

from hydra_x.hf import IMAGENET_MEAN, IMAGENET_STD, VISION_TYPES, load_internvl_vision
from hydra_x.teachers.base import TeacherOutput
from hydra_x.teachers.image import ImageTeacher


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
