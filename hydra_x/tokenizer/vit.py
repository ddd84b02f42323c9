"""The two halves of the tokenizer's ViT: Gen-ViT (pixels -> h) and Sem-ViT (restored latent -> s).

Token tensors are (B, S, N, D): S time steps of N = h * w spatial tokens (row-major).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.nn.layers import Block, TokenLayout
from hydra_x.nn.rope import rope_table
from hydra_x.tokenizer.config import TokenizerConfig
from hydra_x.tokenizer.folds import PatchFold, TokenFold


def make_layout(
    config: TokenizerConfig, steps: int, grid: tuple[int, int], mode: str, head_dim: int, device: torch.device
) -> TokenLayout:
    rope = rope_table(steps, grid[0], grid[1], head_dim, config.rope_theta, device) if config.rope else None
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


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A learned (g, g, D) embedding resized to ``grid`` as SigLIP 2 does (bilinear, antialiased): (N, D)."""
    g_h, g_w, d = pos.shape
    if (g_h, g_w) == tuple(grid):
        return pos.reshape(-1, d)
    # antialias is not implemented for bf16 on the CPU; interpolate in fp32.
    resized = F.interpolate(
        pos.permute(2, 0, 1)[None].float(), size=grid, mode="bilinear", align_corners=False, antialias=True
    )
    return resized[0].reshape(d, -1).t().to(pos.dtype)


class GenViT(nn.Module):
    """Fold 1 (spatio-temporal patchify), ``fold_at`` layers, fold 2, the remaining Gen-ViT layers."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        input_fold, inner_fold = config.temporal_folds
        self.patch_fold = PatchFold(config.in_channels, config.patch_size, input_fold, config.width)
        g = config.abs_pos_grid
        self.pos_embed = nn.Parameter(torch.zeros(g, g, config.width)) if g else None
        self.blocks = make_blocks(config, config.gen_depth, config.width, config.heads, config.mlp_dim)
        self.token_fold = TokenFold(config.width, inner_fold) if inner_fold > 1 else None

    def forward(self, x: torch.Tensor, mode: str, hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Pixels (B, C, 1 + T, H, W) -> h (B, 1 + T / factor, N, D).

        If ``hidden`` is a list, it receives the patch embedding and then every layer's output, as
        transformers' ``hidden_states`` (index k = after layer k); fold 2 acts between two entries.
        """
        cfg = self.config
        grid = (x.shape[-2] // cfg.patch_size, x.shape[-1] // cfg.patch_size)
        head_dim = cfg.width // cfg.heads
        h = self.patch_fold(x)  # (B, S1, N, D)
        if self.pos_embed is not None:
            h = h + resize_pos_embed(self.pos_embed, grid)
        if hidden is not None:
            hidden.append(h)
        layout = make_layout(cfg, h.shape[1], grid, mode, head_dim, h.device)
        h = run_blocks(self.blocks[: cfg.fold_at], h, layout, hidden)
        if self.token_fold is not None:
            h = self.token_fold(h)  # (B, S2, N, D)
            layout = make_layout(cfg, h.shape[1], grid, mode, head_dim, h.device)
        return run_blocks(self.blocks[cfg.fold_at :], h, layout, hidden)


class SemViT(nn.Module):
    """The last ``depth - gen_depth`` layers of the ViT and its final norm: restored latent -> s."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = make_blocks(config, config.sem_depth, config.width, config.heads, config.mlp_dim)
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps)

    def forward(
        self, h: torch.Tensor, grid: tuple[int, int], mode: str, hidden: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        cfg = self.config
        layout = make_layout(cfg, h.shape[1], grid, mode, cfg.width // cfg.heads, h.device)
        return self.norm(run_blocks(self.blocks, h, layout, hidden))
