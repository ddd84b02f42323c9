"""The parts that join the tokenizer and the LLM: the projector, and the flow head (with its time embedding).

- ``Projector``: Sem-ViT tokens s (..., D_sem) -> LLM embeddings (..., D_llm), an MLP (LLaVA's choice).
- ``FlowHead``: for each visual position of a generated block, the velocity of its 64-channel latent token.
  Its input is the noisy latent token z_t; every block is adaLN-modulated by the LLM's hidden state at that
  position plus the time embedding (MAR's head), so the LLM says *what* to denoise toward and the head does
  the per-token regression. The modulations and the output layer start at zero (adaLN-Zero): the first
  prediction is 0, and the residual stream is the identity.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hydra_x.nn.adaln import TimeEmbedding, modulate


class Projector(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.mlp(s)


class AdaLNResBlock(nn.Module):
    """x + gate * MLP(modulate(LN(x), shift, scale)), the three from the per-token condition c."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class FlowHead(nn.Module):
    def __init__(self, hidden_dim: int, latent_channels: int, width: int, depth: int, time_dim: int) -> None:
        super().__init__()
        self.z_proj = nn.Linear(latent_channels, width)
        self.cond_proj = nn.Linear(hidden_dim, width)
        self.time_embed = TimeEmbedding(width, time_dim)
        self.blocks = nn.ModuleList(AdaLNResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, latent_channels)

    @torch.no_grad()
    def init_zero(self) -> None:
        """adaLN-Zero: modulations and the output layer start at zero."""
        for block in self.blocks:
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        for layer in (self.final_modulation[-1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """hidden (N, D_llm), z_t (N, C), t (N,): one row per visual token -> velocity (N, C)."""
        c = self.cond_proj(hidden) + self.time_embed(t).to(hidden.dtype)  # (N, W)
        x = self.z_proj(z_t.to(hidden.dtype))
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(x), shift, scale))
