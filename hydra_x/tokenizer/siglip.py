"""Start the tokenizer from a SigLIP 2 (or SigLIP) vision tower, through transformers.

Both halves of the ViT take the tower's layers in order (Gen-ViT layers 0..gen_depth-1, Sem-ViT the
rest), the Sem-ViT's final norm takes ``post_layernorm``, and the folds are initialised so that an image
passes them exactly (see hydra_x.tokenizer.folds). RoPE angle scales start at 0 on the spatial axes of
the pretrained layers (the tower has no RoPE) and the learned absolute position embedding is kept, resized
to other grids as transformers resizes it for that family (see ``FAMILY_POS_INTERPOLATION``).
Result: for an image of any size, the Gen-ViT's hidden state after layer k equals the tower's hidden state k.
Bottleneck, decoder, Decompressor and heads keep their random initialisation.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from hydra_x.hf import hub_kwargs
from hydra_x.tokenizer.config import TOKENIZER_PRESETS, TokenizerConfig

log = logging.getLogger(__name__)

_ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu"}
# How transformers resizes each family's learned position embedding to another patch grid: SigLIP (v1, and the
# fixed-resolution SigLIP 2 checkpoints, which load as v1) bicubically without antialiasing
# (SiglipVisionEmbeddings.interpolate_pos_encoding), SigLIP 2 NaFlex bilinearly with antialiasing
# (Siglip2VisionEmbeddings.resize_positional_embeddings). The wrong one changes hidden state 0 by about 1.
FAMILY_POS_INTERPOLATION = {"siglip_vision_model": "bicubic", "siglip2_vision_model": "bilinear"}


def load_vision_tower(name_or_path: str | Path, **hub: Any):
    """The vision config and state dict (prefix stripped) of a SigLIP / SigLIP 2 checkpoint."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(name_or_path), **hub)
    vision_config = getattr(config, "vision_config", config)
    if vision_config.model_type not in FAMILY_POS_INTERPOLATION:
        raise ValueError(
            f"{name_or_path} is a {config.model_type!r} checkpoint; expected SigLIP or SigLIP 2 "
            "(siglip, siglip2, siglip_vision_model, siglip2_vision_model)"
        )
    model = AutoModel.from_pretrained(str(name_or_path), torch_dtype=torch.float32, use_safetensors=True, **hub)
    state = model.state_dict()
    anchor = next((k for k in state if k.endswith("embeddings.patch_embedding.weight") and "text" not in k), None)
    if anchor is None:
        raise ValueError(f"{name_or_path}: no vision patch embedding found in the checkpoint")
    prefix = anchor[: -len("embeddings.patch_embedding.weight")]
    tower = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return vision_config, tower


def tower_activation(vision_config, family: str) -> str:
    """The tokenizer's ``mlp_act`` for a transformers tower's ``hidden_act``."""
    act = _ACTIVATIONS.get(vision_config.hidden_act)
    if act is None:
        raise ValueError(f"unsupported {family} activation {vision_config.hidden_act!r}")
    return act


def config_from_tower(vision_config, preset: str | None, overrides: dict[str, Any], **family: Any) -> TokenizerConfig:
    """A TokenizerConfig with a pretrained tower's shape, ``family`` (what differs between SigLIP and
    InternViT), the preset's other fields beneath them and ``overrides`` above all."""
    fields = dict(TOKENIZER_PRESETS[preset]) if preset else {}
    for derived in ("gen_depth", "fold_at", "decoder_unfold_at"):  # the preset's are for its depth: re-derive
        fields.pop(derived, None)
    fields.update(
        width=vision_config.hidden_size,
        depth=vision_config.num_hidden_layers,
        heads=vision_config.num_attention_heads,
        mlp_dim=vision_config.intermediate_size,
        in_channels=vision_config.num_channels,
        norm_eps=vision_config.layer_norm_eps,
        **family,
    )
    fields.update(overrides)
    config = TokenizerConfig(**fields)
    if config.depth > vision_config.num_hidden_layers:
        raise ValueError(f"depth {config.depth} exceeds the tower's {vision_config.num_hidden_layers} layers")
    if config.rope and not config.rope_learnable_scale:
        log.warning("rope_learnable_scale=False: RoPE will perturb the pretrained tower from the first step")
    return config


# What a pretrained tower decides of the tokenizer's config (its depth too, as an upper bound).
TOWER_FIELDS = (
    "width",
    "heads",
    "mlp_dim",
    "in_channels",
    "norm_eps",
    "patch_size",
    "mlp_act",
    "qkv_bias",
    "abs_pos_grid",
    "pos_interpolation",
    "cls_token",
    "layer_scale_init",
    "final_norm",
)


def check_fits_tower(config: TokenizerConfig, tower: TokenizerConfig, source: str | Path) -> None:
    """Refuse a config that a tower's weights cannot start: every field the tower decides must match."""
    wrong = [
        f"{f}={getattr(config, f)!r} (the tower's: {getattr(tower, f)!r})"
        for f in TOWER_FIELDS
        if getattr(config, f) != getattr(tower, f)
    ]
    if config.depth > tower.depth:
        wrong.append(f"depth={config.depth} (the tower has {tower.depth} layers)")
    if wrong:
        # The presets resize positions as SigLIP 2 NaFlex does; a SigLIP v1 (or fixed-resolution SigLIP 2) tower
        # needs the field set, which no preset does.
        hint = ""
        if config.pos_interpolation != tower.pos_interpolation:
            hint = (
                f" (model.pos_interpolation={tower.pos_interpolation} in training: transformers resizes this "
                "tower's position embedding that way)"
            )
        raise ValueError(
            f"the tokenizer config does not fit the tower {source}: {'; '.join(wrong)}; use the tower's preset "
            f"(so400m for SigLIP 2 So400m/16, hydra-tok for InternViT-300M) or change those fields{hint}"
        )


def config_from_siglip(vision_config, preset: str | None = None, **overrides: Any) -> TokenizerConfig:
    patch = vision_config.patch_size
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    num_patches = getattr(vision_config, "num_patches", None) or (vision_config.image_size // patch) ** 2
    return config_from_tower(
        vision_config,
        preset,
        overrides,
        patch_size=patch,
        mlp_act=tower_activation(vision_config, "SigLIP"),
        qkv_bias=True,
        abs_pos_grid=math.isqrt(num_patches),
        pos_interpolation=FAMILY_POS_INTERPOLATION[vision_config.model_type],
    )


@torch.no_grad()
def load_tower_weights(model, tower: dict[str, torch.Tensor]) -> None:
    cfg = model.config
    gen = model.gen_vit
    patch = tower["embeddings.patch_embedding.weight"]
    d = patch.shape[0]
    if patch.ndim == 2:  # SigLIP 2 NaFlex: Linear over patches flattened as (p, p, C)
        patch = patch.view(d, cfg.patch_size, cfg.patch_size, cfg.in_channels).permute(0, 3, 1, 2)
    gen.patch_fold.load_frame_embedding(patch, tower.get("embeddings.patch_embedding.bias"))
    pos = tower["embeddings.position_embedding.weight"]
    gen.pos_embed.copy_(pos.view(cfg.abs_pos_grid, cfg.abs_pos_grid, d))
    if gen.token_fold is not None:
        gen.token_fold.init_identity_on_last()
    blocks = list(gen.blocks) + list(model.sem_vit.blocks)
    for i, block in enumerate(blocks):
        p = f"encoder.layers.{i}."
        block.norm1.weight.copy_(tower[p + "layer_norm1.weight"])
        block.norm1.bias.copy_(tower[p + "layer_norm1.bias"])
        block.norm2.weight.copy_(tower[p + "layer_norm2.weight"])
        block.norm2.bias.copy_(tower[p + "layer_norm2.bias"])
        qkv = [tower[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]
        block.attn.qkv.weight.copy_(torch.cat(qkv))
        block.attn.qkv.bias.copy_(torch.cat([tower[p + f"self_attn.{n}_proj.bias"] for n in "qkv"]))
        block.attn.proj.weight.copy_(tower[p + "self_attn.out_proj.weight"])
        block.attn.proj.bias.copy_(tower[p + "self_attn.out_proj.bias"])
        block.mlp.fc1.weight.copy_(tower[p + "mlp.fc1.weight"])
        block.mlp.fc1.bias.copy_(tower[p + "mlp.fc1.bias"])
        block.mlp.fc2.weight.copy_(tower[p + "mlp.fc2.weight"])
        block.mlp.fc2.bias.copy_(tower[p + "mlp.fc2.bias"])
        if block.attn.rope_scale is not None:
            block.attn.rope_scale[1:].zero_()  # spatial axes off; time stays on (an image has t = 0)
    model.sem_vit.norm.weight.copy_(tower["post_layernorm.weight"])
    model.sem_vit.norm.bias.copy_(tower["post_layernorm.bias"])


def tokenizer_from_siglip(
    cls,
    name_or_path: str | Path,
    *,
    preset: str | None = None,
    config: TokenizerConfig | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    **overrides: Any,
):
    """A tokenizer whose ViT starts from the SigLIP (2) tower at ``name_or_path`` (Hub id or folder).

    Sizes come from the tower; ``preset`` supplies the other fields (decoder, heads) and ``overrides``
    change any field (e.g. ``temporal_folds=(4, 1)``, ``gen_depth=12``, ``depth`` up to the tower's). Or pass
    the whole ``config`` (as training does), which must fit the tower (a clear error says where it does not).
    """
    hub = hub_kwargs(revision, cache_dir, token, local_files_only)
    vision_config, tower = load_vision_tower(name_or_path, **hub)
    if config is None:
        config = config_from_siglip(vision_config, preset, **overrides)
    else:
        check_fits_tower(config, config_from_siglip(vision_config), name_or_path)
    model = cls.from_config(config, device="cpu", seed=seed)
    load_tower_weights(model, tower)
    return model.to(device=device or "cpu", dtype=dtype)
