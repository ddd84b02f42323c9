"""The parts that join the tokenizer and the LLM: the projector, and the flow head (with its time embedding).

- ``Projector``: Sem-ViT tokens s (..., D_sem) -> LLM embeddings (..., D_llm), an MLP (LLaVA's choice), plus,
  where the config asks for them, ``GridPositions``: where each token sits in its block (latent step, row,
  column). The Sem-ViT's rotary attention leaves no absolute position in its tokens, least of all in those of a
  noisy latent, and the LLM's 1D positions put a token's lower neighbour a whole row away; BAGEL adds such
  fixed 2D positions to its latent tokens likewise.
- ``FlowHead``: for each visual position of a generated block, the velocity of its 64-channel latent token.
  Its input is the noisy latent token z_t; every block is adaLN-modulated by the LLM's hidden state at that
  position plus the time embedding (MAR's head), so the LLM says *what* to denoise toward and the head does
  the per-token regression. The modulations and the output layer start at zero (adaLN-Zero): the first
  prediction is 0, and the residual stream is the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from hydra_x.nn.adaln import TimeEmbedding, modulate


class GridPositions(nn.Module):
    """(steps, h, w) -> (steps * h * w, D) in step-major, row-major order: sinusoidal features of each token's
    latent step, row and column (integer coordinates, so any aspect bucket or clip length works) through a
    linear layer that starts at zero, so that a model gains positions without a jump in its inputs."""

    def __init__(self, dim: int, freq_dim: int = 96) -> None:
        super().__init__()
        if freq_dim % 6:
            raise ValueError(f"freq_dim must be a multiple of 6 (cos and sin of 3 axes), got {freq_dim}")
        self.freq_dim = freq_dim
        self.proj = nn.Linear(freq_dim, dim)

    def features(self, steps: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        axes = [torch.arange(n, device=device, dtype=torch.float32) for n in (steps, h, w)]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # (N, 3)
        per_axis = self.freq_dim // 6
        # Wavelengths from 2 pi to 2 pi * 100 tokens: the shortest tell neighbours apart, the longest whole grids.
        freqs = torch.exp(-math.log(100.0) * torch.arange(per_axis, device=device, dtype=torch.float32) / per_axis)
        angles = (coords[:, :, None] * freqs).flatten(1)  # (N, 3 * per_axis)
        return torch.cat((angles.cos(), angles.sin()), dim=-1)

    def forward(self, steps: int, h: int, w: int) -> torch.Tensor:
        weight = self.proj.weight
        return self.proj(self.features(steps, h, w, weight.device).to(weight.dtype))

    @torch.no_grad()
    def init_zero(self) -> None:
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)


class Projector(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, depth: int = 2, positions: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        self.mlp = nn.Sequential(*layers)
        self.positions = GridPositions(out_dim) if positions else None

    def forward(self, s: torch.Tensor, grid: tuple[int, int, int] | None = None) -> torch.Tensor:
        """s (..., N, D_sem) -> (..., N, D); with positions, ``grid`` (steps, h, w) of the N tokens."""
        out = self.mlp(s)
        if self.positions is not None:
            if grid is None:
                raise ValueError("this projector adds grid positions: pass grid=(steps, h, w)")
            out = out + self.positions(*grid)
        return out


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
