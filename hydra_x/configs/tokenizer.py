"""Tokenizer presets as Python.

Each preset is a dict of the fields it sets; ``tokenizer_config(name, **overrides)`` merges the overrides
*before* the config derives its defaults, so ``tokenizer_config("so400m", depth=12)`` re-derives the
Gen/Sem split and the fold position for 12 layers instead of keeping So400m's.
"""

from __future__ import annotations

from typing import Any

from hydra_x.tokenizer.config import TokenizerConfig

# What HYDRA-TOK shares at every size: InternViT's block and embeddings, image only, the flow decoder.
_INTERNVIT: dict[str, Any] = dict(
    cls_token=True,
    pos_interpolation="bicubic",
    layer_scale_init=0.1,
    mlp_act="gelu",
    qkv_bias=False,
    norm_eps=1e-6,
    final_norm=False,
    latent_channels=64,
    temporal_folds=(1, 1),
    decompressor=False,
    decoder="flow",
)

TOKENIZER_PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests: a forward of a 17-frame 64^2 clip takes milliseconds.
    "tiny": dict(width=96, depth=4, heads=4, mlp_dim=192, latent_channels=64),
    # One GPU, 128-256 px experiments.
    "small": dict(width=512, depth=12, heads=8, mlp_dim=2048),
    # ViT-B/16; matches SigLIP 2 base/16, so it can start from google/siglip2-base-patch16-*.
    "base": dict(width=768, depth=12, heads=12, mlp_dim=3072, abs_pos_grid=16),
    # The paper's size: SigLIP 2 So400m/16 (27 layers, width 1152, 16 heads, MLP 4304), symmetric
    # 27-layer decoder, C = 64, Gen/Sem split 13 / 14, fold 2 after 6 Gen-ViT layers.
    "so400m": dict(width=1152, depth=27, heads=16, mlp_dim=4304, abs_pos_grid=16, image_teacher_dim=1152),
    # HYDRA-TOK (DESIGN 1.2b), image only: InternViT-300M's shape and architecture (patch 14, CLS token,
    # absolute position embedding with CLS on InternVL's 448 / 14 = 32 grid, resized bicubically, layer
    # scale, exact GELU, no q/k/v bias, no final norm), split 12 / 12, C = 64, no temporal folds, no
    # Decompressor, flow-matching pixel decoder. Start it with HydraXTokenizer.from_internvit.
    "hydra-tok": dict(
        _INTERNVIT, width=1024, depth=24, heads=16, mlp_dim=4096, patch_size=14, gen_depth=12, abs_pos_grid=32
    ),
    # HYDRA-TOK's architecture at `small` size for one GPU, from scratch: patch 16 (not 14) so it trains on
    # the same 128^2 crops as HYDRA-X `small` (128 is no multiple of 14) and the two compare token for token;
    # RoPE only (no absolute embedding: nothing pretrained to keep).
    "hydra-tok-small": dict(_INTERNVIT, width=512, depth=12, heads=8, mlp_dim=2048, patch_size=16, gen_depth=6),
}


def tokenizer_config(name: str, **overrides: Any) -> TokenizerConfig:
    """The preset ``name`` with ``overrides`` applied (any TokenizerConfig field)."""
    if name not in TOKENIZER_PRESETS:
        raise ValueError(f"unknown tokenizer preset {name!r}; choose one of {sorted(TOKENIZER_PRESETS)}")
    return TokenizerConfig(**{**TOKENIZER_PRESETS[name], **overrides})
