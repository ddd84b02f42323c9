"""Start the tokenizer from InternViT (InternVL's vision tower), through transformers: HYDRA-TOK's start.

InternViT-300M is a 24-layer ViT (width 1024, 16 heads, MLP 4096, patch 14) with a CLS token, a learned
absolute position embedding (CLS included, resized bicubically), per-channel layer scale, exact GELU, no
q/k/v bias and no final norm (mean pooling). The tokenizer config mirrors each of these (``cls_token``,
``abs_pos_grid`` + ``pos_interpolation="bicubic"``, ``layer_scale_init``, ``mlp_act="gelu"``,
``qkv_bias=False``, ``final_norm=False``), and the layers map in order: Gen-ViT layers 0..gen_depth-1, the
Sem-ViT the rest. RoPE angle scales start at 0 on the spatial axes (the tower has no RoPE); the CLS token
is the tower's CLS plus its position embedding; fold 2, if any, starts as the identity on the anchor.
InternVL's processor normalises pixels with the ImageNet statistics while the tokenizer takes [-1, 1]
pixels: the normalisation, an affine map per channel, is folded into the patch embedding.
Result: for an image x in [-1, 1], the Gen-ViT's hidden state after layer k equals the tower's hidden
state k (CLS included) on the normalised image, and the Sem-ViT given the Gen-ViT's CLS continues exactly
as the tower's last layers.
Bottleneck, decoder, Decompressor and heads keep their random initialisation.

Checkpoints: an ``InternVLVisionModel`` folder / Hub id or a full InternVL ``-hf`` checkpoint (its vision
tower is taken); see hydra_x.teachers.internvit, which reads both for the teacher too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from hydra_x.hf import IMAGENET_MEAN, IMAGENET_STD, hub_kwargs, load_internvl_vision
from hydra_x.tokenizer.config import TokenizerConfig
from hydra_x.tokenizer.siglip import check_fits_tower, config_from_tower, tower_activation


def _square(value: Any, name: str) -> int:
    a, b = (value, value) if isinstance(value, int) else tuple(value)
    if a != b:
        raise ValueError(f"InternViT towers with a non-square {name} {tuple(value)} are not supported")
    return int(a)


def config_from_internvit(vision_config, preset: str | None = "hydra-tok", **overrides: Any) -> TokenizerConfig:
    """A TokenizerConfig matching the tower exactly; ``preset`` supplies the other fields, ``overrides`` win."""
    if getattr(vision_config, "use_qk_norm", False):
        raise ValueError("InternViT towers with q/k norm (InternViT-6B) are not supported; InternViT-300M has none")
    if getattr(vision_config, "norm_type", "layer_norm") != "layer_norm":
        raise ValueError(f"InternViT norm {vision_config.norm_type!r} is not supported; expected 'layer_norm'")
    patch = _square(vision_config.patch_size, "patch size")
    grid = None
    if vision_config.use_absolute_position_embeddings:
        grid = _square(vision_config.image_size, "image size") // patch
    config = config_from_tower(
        vision_config,
        preset,
        overrides,
        patch_size=patch,
        mlp_act=tower_activation(vision_config, "InternViT"),
        qkv_bias=bool(vision_config.attention_bias),
        abs_pos_grid=grid,
        pos_interpolation="bicubic",
        cls_token=True,
        layer_scale_init=float(vision_config.layer_scale_init_value),
        final_norm=not vision_config.use_mean_pooling,
    )
    if not (config.cls_token and config.layer_scale_init is not None):
        raise ValueError("an InternViT start needs cls_token=True and layer scale (layer_scale_init set)")
    return config


def fold_normalization(
    weight: torch.Tensor, bias: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A patch embedding (D, C, p, p) on normalised pixels ((x + 1) / 2 - mean) / std -> the same on x in [-1, 1]."""
    mean_t, std_t = (torch.tensor(v, dtype=torch.float64).view(1, -1, 1, 1) for v in (mean, std))
    scale, shift = 0.5 / std_t, (0.5 - mean_t) / std_t  # normalised = scale * x + shift, per channel
    w = weight.double()
    return (w * scale).to(weight.dtype), (bias.double() + (w * shift).sum((1, 2, 3))).to(bias.dtype)


@torch.no_grad()
def load_internvit_weights(
    model, tower, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> None:
    """Copy an ``InternVLVisionModel``'s weights into the tokenizer's ViT (see the module docstring)."""
    cfg, vc = model.config, tower.config
    gen = model.gen_vit
    emb = tower.embeddings
    proj = emb.patch_embeddings.projection
    gen.patch_fold.load_frame_embedding(*fold_normalization(proj.weight, proj.bias, mean, std))
    cls = emb.cls_token.reshape(-1)
    if emb.position_embeddings is not None:
        pos = emb.position_embeddings[0]  # (1 + g * g, D): CLS first
        if gen.pos_embed is None:
            raise ValueError("the tower has an absolute position embedding; set abs_pos_grid")
        gen.pos_embed.copy_(pos[1:].reshape(cfg.abs_pos_grid, cfg.abs_pos_grid, -1))
        cls = cls + pos[0]
    gen.cls_token.copy_(cls)
    if gen.token_fold is not None:
        gen.token_fold.init_identity_on_last()
    blocks = list(gen.blocks) + list(model.sem_vit.blocks)
    for block, layer in zip(blocks, tower.encoder.layer):
        attn = layer.attention
        block.norm1.load_state_dict(layer.layernorm_before.state_dict())
        block.norm2.load_state_dict(layer.layernorm_after.state_dict())
        block.attn.qkv.weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        if vc.attention_bias:
            block.attn.qkv.bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        block.attn.proj.load_state_dict(attn.projection_layer.state_dict())
        block.mlp.fc1.load_state_dict(layer.mlp.fc1.state_dict())
        block.mlp.fc2.load_state_dict(layer.mlp.fc2.state_dict())
        block.ls1.copy_(layer.lambda_1)
        block.ls2.copy_(layer.lambda_2)
        if block.attn.rope_scale is not None:
            block.attn.rope_scale[1:].zero_()  # spatial axes off; time stays on (an image has t = 0)
    if cfg.final_norm and not vc.use_mean_pooling:
        model.sem_vit.norm.load_state_dict(tower.layernorm.state_dict())


def tokenizer_from_internvit(
    cls,
    name_or_path: str | Path,
    *,
    preset: str | None = "hydra-tok",
    config: TokenizerConfig | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    pixel_mean: Sequence[float] = IMAGENET_MEAN,
    pixel_std: Sequence[float] = IMAGENET_STD,
    **overrides: Any,
):
    """A tokenizer whose ViT starts from the InternViT tower at ``name_or_path`` (Hub id or folder).

    Sizes and architecture come from the tower; ``preset`` (default ``hydra-tok``) supplies the other fields
    (decoder, latent channels, folds) and ``overrides`` change any field (e.g. ``gen_depth``, ``decoder``).
    Or pass the whole ``config`` (as training does), which must fit the tower.
    ``pixel_mean`` / ``pixel_std``: the tower's input statistics (InternVL's processor: ImageNet's).
    """
    tower = load_internvl_vision(
        name_or_path, dtype=torch.float32, **hub_kwargs(revision, cache_dir, token, local_files_only)
    )
    if config is None:
        config = config_from_internvit(tower.config, preset, **overrides)
    else:
        check_fits_tower(config, config_from_internvit(tower.config, None), name_or_path)
    model = cls.from_config(config, device="cpu", seed=seed)
    load_internvit_weights(model, tower, pixel_mean, pixel_std)
    return model.to(device=device or "cpu", dtype=dtype)
