"""Tiny teachers with RANDOM weights, built from configs and saved as real checkpoints: for offline tests.

    folder = save_tiny_teacher("vjepa2", tmp_path / "vjepa2")
    teacher = load_teacher(folder)          # logs a warning: random weights

They go through exactly the loading path of the real checkpoints (config.json + model.safetensors, read by
transformers), but they distill noise. Their configs carry ``hydra_x_random_weights = true``; an adapter
that loads one says so in a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

RANDOM_WEIGHTS_FLAG = "hydra_x_random_weights"

# Small enough that a forward on 32^2 inputs takes milliseconds on a CPU.
_VIT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "siglip2": dict(_VIT, patch_size=8, num_patches=16),
    "siglip": dict(_VIT, patch_size=8, image_size=32),
    "dinov2": dict(_VIT, patch_size=4, image_size=16),
    "vjepa2": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=8,
        crop_size=32,
        frames_per_clip=4,
        pred_hidden_size=16,
        pred_num_hidden_layers=1,
        pred_num_attention_heads=2,
        num_pooler_layers=1,
    ),
    "videomae": dict(_VIT, patch_size=8, image_size=32, num_frames=4),
    # InternVL's vision tower (HYDRA-TOK): 4 layers so that a 2 / 2 Gen / Sem split exists.
    "internvit": dict(_VIT, num_hidden_layers=4, patch_size=8, image_size=32),
}


def _classes(kind: str):
    import transformers as tf

    return {
        "siglip2": (tf.Siglip2VisionConfig, tf.Siglip2VisionModel),
        "siglip": (tf.SiglipVisionConfig, tf.SiglipVisionModel),
        "dinov2": (tf.Dinov2Config, tf.Dinov2Model),
        "vjepa2": (tf.VJEPA2Config, tf.VJEPA2Model),
        "videomae": (tf.VideoMAEConfig, tf.VideoMAEModel),
        "internvit": (tf.InternVLVisionConfig, tf.InternVLVisionModel),
    }[kind]


@torch.no_grad()
def _randomise_constants(model: torch.nn.Module) -> None:
    """InternViT starts its CLS token and position embedding at zero and its norms and layer scales at
    constants; random values make a swapped or dropped weight visible in a hidden-state comparison."""
    for name, p in model.named_parameters():
        if "cls_token" in name or "position_embeddings" in name:
            p.normal_()
        elif "lambda_" in name:
            p.uniform_(0.2, 1.0)
        elif "layernorm" in name:
            p.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)


def save_tiny_teacher(kind: str, folder: str | Path, *, seed: int = 0, **overrides: Any) -> Path:
    """Write a random-weight tiny ``kind`` checkpoint to ``folder``; ``overrides`` change config fields."""
    if kind not in TINY_CONFIGS:
        raise ValueError(f"unknown teacher kind {kind!r}; tiny teachers exist for {', '.join(TINY_CONFIGS)}")
    config_cls, model_cls = _classes(kind)
    config = config_cls(**{**TINY_CONFIGS[kind], **overrides, RANDOM_WEIGHTS_FLAG: True})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config).eval()
        if kind == "internvit":
            _randomise_constants(model)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder
