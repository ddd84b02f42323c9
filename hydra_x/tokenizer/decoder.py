"""The pixel decoder: a mirror of the encoder that undoes the folds exactly.

latent (B, S2, N, C) -> linear C -> width -> layers at S2 steps -> inverse of fold 2 (anchor padding
dropped) -> layers at S1 steps -> norm -> linear to f1 x 3 x p x p pixels per token -> inverse of fold 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hydra_x.tokenizer.config import TokenizerConfig
from hydra_x.tokenizer.folds import PatchUnfold, TokenUnfold
from hydra_x.tokenizer.vit import make_blocks, make_layout, run_blocks


class PixelDecoder(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        width = config.decoder_width
        input_fold, inner_fold = config.temporal_folds
        self.in_proj = nn.Linear(config.latent_channels, width)
        self.blocks = make_blocks(config, config.decoder_depth, width, config.decoder_heads, config.decoder_mlp_dim)
        shared = config.temporal_unfold == "shared"
        self.token_unfold = TokenUnfold(width, inner_fold, shared) if inner_fold > 1 else None
        self.norm = nn.LayerNorm(width, eps=config.norm_eps)
        self.patch_unfold = PatchUnfold(width, config.in_channels, config.patch_size, input_fold, shared)

    def forward(self, z: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """z (B, S, N, C) normalised latent tokens -> pixels (B, C_in, 1 + (S - 1) * factor, H, W)."""
        cfg = self.config
        mode = cfg.decoder_attention_mode
        head_dim = cfg.decoder_width // cfg.decoder_heads
        x = self.in_proj(z)
        layout = make_layout(cfg, x.shape[1], grid, mode, head_dim, x.device)
        x = run_blocks(self.blocks[: cfg.decoder_unfold_at], x, layout, None)
        if self.token_unfold is not None:
            x = self.token_unfold(x)
            layout = make_layout(cfg, x.shape[1], grid, mode, head_dim, x.device)
        x = run_blocks(self.blocks[cfg.decoder_unfold_at :], x, layout, None)
        return self.patch_unfold(self.norm(x), grid[0])
