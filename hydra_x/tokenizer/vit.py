"""The two halves of the tokenizer's ViT: Gen-ViT (pixels -> h) and Sem-ViT (restored latent -> s).

Token tensors are (B, S, N, D): S time steps of N = h * w spatial tokens (row-major). With
``config.cls_token`` every step of the Gen-ViT carries P = 1 prefix (CLS) token before its N tokens,
(B, S, P + N, D) inside; it is dropped before the bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.nn.layers import Block, TokenLayout
from hydra_x.nn.rope import RopeTable, rope_table
from hydra_x.tokenizer.config import TokenizerConfig
from hydra_x.tokenizer.folds import PatchFold, TokenFold


def make_layout(
    config: TokenizerConfig,
    steps: int,
    grid: tuple[int, int],
    mode: str,
    head_dim: int,
    device: torch.device,
    prefix: int = 0,
) -> TokenLayout:
    """The layout of S steps of ``prefix`` + h * w tokens each; attention treats a prefix token as one of its step."""
    rope = rope_table(steps, grid[0], grid[1], head_dim, config.rope_theta, device) if config.rope else None
    if rope is not None and prefix:
        # A prefix token sits at (t, 0, 0): it rotates with its step's time and not in space, so with the
        # spatial scales at 0 (the pretrained start) it is exactly the tower's CLS token.
        at_origin = rope_table(steps, 1, 1, head_dim, config.rope_theta, device).base  # (S, P)
        base = torch.cat((at_origin[:, None].expand(-1, prefix, -1), rope.base.view(steps, -1, at_origin.shape[-1])), 1)
        rope = RopeTable(base=base.reshape(-1, base.shape[-1]), axis=rope.axis)
    return TokenLayout(steps, grid[0], grid[1], mode, config.attention_impl, rope)


def make_blocks(config: TokenizerConfig, count: int, width: int, heads: int, mlp_dim: int) -> nn.ModuleList:
    return nn.ModuleList(
        Block(
            width,
            heads,
            mlp_dim,
            eps=config.norm_eps,
            act=config.mlp_act,
            qkv_bias=config.qkv_bias,
            rope_scale=config.rope and config.rope_learnable_scale,
            layer_scale=config.layer_scale_init,
        )
        for _ in range(count)
    )


def run_blocks(
    blocks: nn.ModuleList, x: torch.Tensor, layout: TokenLayout, hidden: list[torch.Tensor] | None
) -> torch.Tensor:
    """Run (B, S, N, D) tokens through ``blocks``; append each block's output to ``hidden`` if given."""
    b, s, n, d = x.shape
    x = x.reshape(b, s * n, d)
    for block in blocks:
        x = block(x, layout)
        if hidden is not None:
            hidden.append(x.view(b, s, n, d))
    return x.view(b, s, n, d)


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """A learned (g, g, D) embedding resized to ``grid``: (N, D).

    ``bilinear`` as SigLIP 2 does (antialiased); ``bicubic`` as SigLIP v1 and InternViT in transformers (no
    antialiasing).
    """
    g_h, g_w, d = pos.shape
    if (g_h, g_w) == tuple(grid):
        return pos.reshape(-1, d)
    # antialias is not implemented for bf16 on the CPU; interpolate in fp32.
    resized = F.interpolate(
        pos.permute(2, 0, 1)[None].float(), size=grid, mode=mode, align_corners=False, antialias=mode == "bilinear"
    )
    return resized[0].reshape(d, -1).t().to(pos.dtype)


def check_feature_layers(config: TokenizerConfig, layers: Sequence[int], semantic: bool) -> tuple[int, ...]:
    """Hidden-state indices of the whole ViT (0..depth) that a forward may return; Sem-ViT ones need ``semantic``."""
    layers = tuple(int(k) for k in layers)
    for k in layers:
        if not 0 <= k <= config.depth:
            raise ValueError(f"feature layer {k} out of range: the ViT has hidden states 0..{config.depth}")
        if k > config.gen_depth and not semantic:
            raise ValueError(
                f"feature layer {k} is a Sem-ViT layer (> gen_depth={config.gen_depth}); needs semantic=True"
            )
    return layers


class GenViT(nn.Module):
    """Fold 1 (spatio-temporal patchify), ``fold_at`` layers, fold 2, the remaining Gen-ViT layers."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        input_fold, inner_fold = config.temporal_folds
        self.patch_fold = PatchFold(config.in_channels, config.patch_size, input_fold, config.width)
        g = config.abs_pos_grid
        self.pos_embed = nn.Parameter(torch.zeros(g, g, config.width)) if g else None
        # InternViT's CLS token plus its position embedding (the two are only ever used as their sum).
        self.cls_token = nn.Parameter(torch.zeros(config.width)) if config.cls_token else None
        self.blocks = make_blocks(config, config.gen_depth, config.width, config.heads, config.mlp_dim)
        self.token_fold = TokenFold(config.width, inner_fold) if inner_fold > 1 else None

    @torch.no_grad()
    def init_from_scratch(self, std: float) -> None:
        """What a random start needs after the generic linear / norm init: the position embedding and CLS token,
        and folds that an image passes as a plain patch embedding and the identity, as after the pretrained
        start (see hydra_x.tokenizer.folds). Draws nothing else: every other weight keeps its seeded value."""
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=std)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=std)
        self.patch_fold.keep_last_frame_only()
        if self.token_fold is not None:
            self.token_fold.init_identity_on_last()

    def forward(self, x: torch.Tensor, mode: str, hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Pixels (B, C, 1 + T, H, W) -> h (B, 1 + T / factor, N, D).

        If ``hidden`` is a list, it receives the patch embedding and then every layer's output, as
        transformers' ``hidden_states`` (index k = after layer k); fold 2 acts between two entries.
        With a CLS token the entries hold it first, (B, S, 1 + N, D), as the tower's hidden states do;
        the returned h never does.
        """
        cfg = self.config
        grid = (x.shape[-2] // cfg.patch_size, x.shape[-1] // cfg.patch_size)
        head_dim = cfg.width // cfg.heads
        h = self.patch_fold(x)  # (B, S1, N, D)
        if self.pos_embed is not None:
            h = h + resize_pos_embed(self.pos_embed, grid, cfg.pos_interpolation)
        if self.cls_token is not None:
            h = torch.cat((self.cls_token.to(h.dtype).expand(*h.shape[:2], 1, -1), h), dim=2)  # (B, S1, 1 + N, D)
        if hidden is not None:
            hidden.append(h)
        layout = make_layout(cfg, h.shape[1], grid, mode, head_dim, h.device, self.num_prefix)
        h = run_blocks(self.blocks[: cfg.fold_at], h, layout, hidden)
        if self.token_fold is not None:
            h = self.token_fold(h)  # (B, S2, P + N, D); the CLS tokens fold like any position
            layout = make_layout(cfg, h.shape[1], grid, mode, head_dim, h.device, self.num_prefix)
        return run_blocks(self.blocks[cfg.fold_at :], h, layout, hidden)[:, :, self.num_prefix :]

    @property
    def num_prefix(self) -> int:
        return 0 if self.cls_token is None else 1


class SemViT(nn.Module):
    """The last ``depth - gen_depth`` layers of the ViT and its final norm: restored latent -> s."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = make_blocks(config, config.sem_depth, config.width, config.heads, config.mlp_dim)
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps) if config.final_norm else nn.Identity()

    def forward(
        self,
        h: torch.Tensor,
        grid: tuple[int, int],
        mode: str,
        hidden: list[torch.Tensor] | None = None,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """h (B, S, N, D) -> s (B, S, N, D). ``hidden`` receives every layer's output, as in the Gen-ViT.

        ``prefix`` (B, S, P, D), e.g. the Gen-ViT's CLS output, is prepended to every step and dropped from
        s (the hidden entries keep it): then an InternViT start continues exactly as the tower. Training
        and the public API give none; the restored latent has no CLS token.
        """
        cfg = self.config
        p = 0 if prefix is None else prefix.shape[2]
        if p:
            h = torch.cat((prefix.to(h.dtype), h), dim=2)  # (B, S, P + N, D)
        layout = make_layout(cfg, h.shape[1], grid, mode, cfg.width // cfg.heads, h.device, p)
        return self.norm(run_blocks(self.blocks, h, layout, hidden)[:, :, p:])
