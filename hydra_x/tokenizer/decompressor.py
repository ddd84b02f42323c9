"""The Decompressor (training only): lifts the video part of s back to frame rate for a video teacher.

Each stage undoes one temporal fold: a 1x1 channel expansion D -> f * D, a channel-to-time reshape
(f times more steps), and one transformer block. With the paper's two 2x folds that is two stages of
2x, so 1 + T / 4 latent steps become T frames. It is discarded after training.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from hydra_x.tokenizer.config import TokenizerConfig
from hydra_x.tokenizer.vit import make_blocks, make_layout


class Decompressor(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        # Undo the inner fold first, then the input fold.
        self.factors = [f for f in reversed(config.temporal_folds) if f > 1]
        width = config.width
        self.expand = nn.ModuleList(nn.Linear(width, f * width) for f in self.factors)
        self.blocks = make_blocks(config, len(self.factors), width, config.heads, config.mlp_dim)

    def forward(self, s_video: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """s_video (B, T / factor, N, D): the Sem-ViT output without the anchor step -> (B, T, N, D)."""
        cfg = self.config
        x = s_video
        for factor, expand, block in zip(self.factors, self.expand, self.blocks):
            x = rearrange(expand(x), "b s n (f d) -> b (s f) n d", f=factor)
            b, s, n, d = x.shape
            layout = make_layout(cfg, s, grid, cfg.sem_attention_mode, cfg.width // cfg.heads, x.device)
            x = block(x.reshape(b, s * n, d), layout).view(b, s, n, d)
        return x
