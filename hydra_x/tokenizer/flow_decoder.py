"""The flow-matching pixel decoder (HYDRA-TOK's): a ViT conditioned on z and on t that predicts the velocity.

    z (B, S2, N, C) -> linear C -> width -> layers at S2 steps -> inverse of fold 2          (condition)
      + fold-1 patch embedding of the noisy pixels x_t (B, 3, F, H, W) at S1 steps
      -> AdaLN layers at S1 steps (time t) -> AdaLN norm -> linear to f1 x 3 x p x p -> inverse of fold 1
      = velocity v (B, 3, F, H, W), the prediction of eps - x (see hydra_x.nn.flow; t = 1 is noise).

The temporal layout is the regression decoder's: the same split at ``decoder_unfold_at``, the same folds
and the same attention mode (``decoder_attention_mode``), so a causal / tubelet tokenizer stays causal.
The first part sees only z, so sampling computes it once and runs only the AdaLN part per Euler step.
Time conditioning is DiT's adaLN-Zero: per block, a linear map of the time embedding gives shift, scale
and gate for attention and MLP; it starts at zero, so every AdaLN block starts as the identity.

What the network's last layer predicts (``flow_prediction``): ``x``, the clean image, turned into the velocity
(x_t - x_hat) / max(t, 0.05) (the default, after JiT, Li & He 2025: a token of width D cannot carry the
f1 x 3 x p x p dimensions of noise that a direct velocity must reproduce when that exceeds D, e.g. 1536 for
a video patch of So400m's width 1152, and a tiny decoder then learns nothing); or ``velocity`` directly.
The decoder's output, the loss and the sampler are the same either way.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.nn.adaln import TimeEmbedding, modulate
from hydra_x.nn.flow import euler_sample, interpolate, velocity_from_clean, velocity_target
from hydra_x.nn.layers import TokenLayout
from hydra_x.tokenizer.config import TokenizerConfig
from hydra_x.tokenizer.folds import PatchFold, PatchUnfold, TokenUnfold
from hydra_x.tokenizer.vit import make_blocks, make_layout, run_blocks

# A key only the flow decoder's weights have, and the prefix of the decoder's weights: how a state dict
# tells which decoder it was saved with (hub loading reports a mismatch by kind, not by key lists).
FLOW_MARKER = "decoder.time_embed."
DECODER_PREFIX = "decoder."


def decoder_kind_of_state(keys) -> str | None:
    """'flow' or 'regression' for a tokenizer state dict's keys; None when it holds no decoder weights."""
    keys = list(keys)
    if not any(k.startswith(DECODER_PREFIX) for k in keys):
        return None
    return "flow" if any(k.startswith(FLOW_MARKER) for k in keys) else "regression"


def check_decoder_kind(decoder: str, keys, source: str, strict: bool = True) -> None:
    """Refuse (or with ``strict=False`` warn about) a state dict holding the other kind of decoder than ``decoder``."""
    found = decoder_kind_of_state(keys)
    if found is None or found == decoder:
        return
    message = (
        f"{source} holds the weights of a {found} pixel decoder, but the config asks for "
        f"decoder={decoder!r}; load it with decoder={found!r} (the kind its config.json records)"
    )
    if strict:
        raise ValueError(message + ", or pass strict=False to keep a freshly initialised decoder")
    logging.getLogger(__name__).warning(message + "; the decoder keeps its initialisation")


class AdaLNBlock(nn.Module):
    """A tokenizer Block whose two pre-norms are modulated by the time, with gated residuals (adaLN-Zero)."""

    def __init__(self, block: nn.Module, dim: int) -> None:
        super().__init__()
        self.block = block
        self.modulation = nn.Linear(dim, 6 * dim)

    def forward(self, x: torch.Tensor, layout: TokenLayout, c: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), c (B, D) = SiLU(time embedding)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).unsqueeze(1).chunk(6, dim=-1)
        b = self.block
        ls1, ls2 = getattr(b, "ls1", None), getattr(b, "ls2", None)  # the Block's layer scale, if it has one
        if ls1 is not None:
            gate1, gate2 = gate1 * ls1, gate2 * ls2
        x = x + gate1 * b.attn(modulate(b.norm1(x), shift1, scale1), layout)
        return x + gate2 * b.mlp(modulate(b.norm2(x), shift2, scale2))


class FlowDecoder(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        width = config.decoder_width
        input_fold, inner_fold = config.temporal_folds
        self.in_proj = nn.Linear(config.latent_channels, width)  # the name set_latent_stats re-parameterises
        plain = make_blocks(config, config.decoder_depth, width, config.decoder_heads, config.decoder_mlp_dim)
        split = config.decoder_unfold_at
        # One list (what hydra_x.train.parallel wraps and shards block by block): plain Blocks on z, then
        # AdaLN blocks on z + x_t.
        self.blocks = nn.ModuleList([*plain[:split], *(AdaLNBlock(b, width) for b in plain[split:])])
        shared = config.temporal_unfold == "shared"
        self.token_unfold = TokenUnfold(width, inner_fold, shared) if inner_fold > 1 else None
        self.pixel_embed = PatchFold(config.in_channels, config.patch_size, input_fold, width)
        self.time_embed = TimeEmbedding(width, config.flow_time_dim)
        self.norm = nn.LayerNorm(width, eps=config.norm_eps)
        self.final_modulation = nn.Linear(width, 2 * width)
        self.patch_unfold = PatchUnfold(width, config.in_channels, config.patch_size, input_fold, shared)

    @torch.no_grad()
    def init_modulation(self) -> None:
        """adaLN-Zero: the time modulations start at zero (call after the generic initialisation)."""
        for block in self.blocks[self.config.decoder_unfold_at :]:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)

    def pixel_shape(self, batch: int, steps: int, grid: tuple[int, int]) -> tuple[int, ...]:
        """The pixels (B, C, F, H, W) that a latent of ``steps`` steps on ``grid`` decodes to."""
        cfg = self.config
        frames = 1 + (steps - 1) * cfg.temporal_factor
        return (batch, cfg.in_channels, frames, grid[0] * cfg.patch_size, grid[1] * cfg.patch_size)

    def _layout(self, steps: int, grid: tuple[int, int], device: torch.device) -> TokenLayout:
        cfg = self.config
        return make_layout(cfg, steps, grid, cfg.decoder_attention_mode, cfg.decoder_width // cfg.decoder_heads, device)

    def condition(self, z: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """z (B, S2, N, C) -> the z-only features at fold-1 steps (B, S1, N, D); independent of t and x_t."""
        h = self.in_proj(z)
        h = run_blocks(self.blocks[: self.config.decoder_unfold_at], h, self._layout(h.shape[1], grid, h.device), None)
        return self.token_unfold(h) if self.token_unfold is not None else h

    def velocity(self, cond: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """cond (B, S1, N, D), noisy pixels x_t (B, C, F, H, W), t (B,) -> velocity (B, C, F, H, W)."""
        b, s1, n, d = cond.shape
        cfg = self.config
        frames = 1 + (s1 - 1) * cfg.temporal_folds[0]
        expected = (b, cfg.in_channels, frames, grid[0] * cfg.patch_size, grid[1] * cfg.patch_size)
        if tuple(x_t.shape) != expected:
            raise ValueError(f"noisy pixels must have shape {expected} for this latent, got {tuple(x_t.shape)}")
        if t.shape != (b,):
            raise ValueError(f"t must have shape (B,) = ({b},), got {tuple(t.shape)}")
        h = cond + self.pixel_embed(x_t.to(cond.dtype))  # (B, S1, N, D)
        c = F.silu(self.time_embed(t)).to(h.dtype)  # (B, D)
        layout = self._layout(s1, grid, h.device)
        h = h.reshape(b, s1 * n, d)
        for block in self.blocks[cfg.decoder_unfold_at :]:
            h = block(h, layout, c)
        shift, scale = self.final_modulation(c).unsqueeze(1).chunk(2, dim=-1)
        h = modulate(self.norm(h), shift, scale).view(b, s1, n, d)
        out = self.patch_unfold(h, grid[0])
        if cfg.flow_prediction == "x":
            return velocity_from_clean(x_t, t, out)
        return out

    def forward(self, z: torch.Tensor, grid: tuple[int, int], x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z (B, S2, N, C), x_t (B, C, F, H, W), t (B,) -> velocity (B, C, F, H, W)."""
        return self.velocity(self.condition(z, grid), x_t, t, grid)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, grid: tuple[int, int], noise: torch.Tensor, steps: int) -> torch.Tensor:
        """Euler from ``noise`` (B, C, F, H, W) at t = 1 to the image at t = 0: float32 pixels."""
        cond = self.condition(z, grid)  # once for all steps
        return euler_sample(lambda x, t: self.velocity(cond, x, t, grid), noise, steps)

    def sample_pixels(
        self,
        z: torch.Tensor,
        grid: tuple[int, int],
        noise: torch.Tensor | None,
        steps: int | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """z tokens (B, S, N, C) -> sampled pixels (B, 3, F, H, W), float32: from ``noise`` if given (checked),
        else from Gaussian noise of ``generator`` (its device; the global RNG if None), in ``steps`` (default
        ``config.flow_steps``) Euler steps."""
        shape = self.pixel_shape(z.shape[0], z.shape[1], grid)
        if noise is None:
            device = generator.device if generator is not None else z.device
            noise = torch.randn(shape, generator=generator, device=device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"flow_noise must have the pixels' shape {shape}, got {tuple(noise.shape)}")
        steps = self.config.flow_steps if steps is None else steps
        return self.sample(z, grid, noise.to(z.device), steps)

    def train_velocity(
        self, z: torch.Tensor, grid: tuple[int, int], x: torch.Tensor, noise: torch.Tensor | None, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixels x (B, 3, F, H, W) at time t (B,) -> (x_t, velocity, velocity target), all x's shape."""
        noise = torch.randn_like(x) if noise is None else noise.to(x)
        if noise.shape != x.shape:
            raise ValueError(f"flow_noise must have the pixels' shape {tuple(x.shape)}, got {tuple(noise.shape)}")
        x_t = interpolate(x, noise, t)
        return x_t, self(z, grid, x_t, t), velocity_target(x, noise)
