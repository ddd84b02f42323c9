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
  prediction is 0, and the residual stream is the identity. What its last layer predicts (``prediction``):
  ``velocity`` directly, or ``x``, the clean latent token, turned into the velocity (z_t - x_hat) / max(t, 0.05)
  (JiT, Li & He 2025, as the tokenizer's flow decoder does); the output, the loss and the sampler are the same
  either way. With ``attention_layers`` > 0 the head first runs that many adaLN self-attention layers among the
  tokens of each generated block (3D RoPE over latent step, row and column; across steps full or causal, as the
  block's video attention), so that neighbouring tokens can agree on where an object lies before each regresses
  its own velocity, as a DiT's tokens do; 0 (the default) is the per-token head above. What those layers read
  (``attention_input``): ``latent``, the noisy latent tokens (the head can then denoise a block jointly with
  little from the LLM), or ``condition``, the LLM's hidden states projected to the head's width, whose gated
  residuals are then added to each noisy latent token's stream (the tokens agree on a layout from what the LLM
  made of the caption and the noisy block, as Show-o2's head reads only the LLM's states). Either way a layer
  whose gate is zero changes nothing, so a head gains layers, or takes them in part-way, without a jump.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

import torch
import torch.nn as nn

from hydra_x.nn.adaln import TimeEmbedding, modulate
from hydra_x.nn.flow import CLEAN_MIN_TIME, PREDICTIONS, velocity_from_clean
from hydra_x.nn.layers import Attention, TokenLayout, init_weights
from hydra_x.nn.rope import rope_table
from hydra_x.unified.packing import to_device_async, token_runs


def _zero_linear(layer: nn.Linear) -> None:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def copy_velocity(
    z_t: torch.Tensor, source: torch.Tensor, t: torch.Tensor, prediction: str = "velocity"
) -> torch.Tensor:
    """(N, C) velocity added to a flow head's at z_t (N, C), times t (N,), so that a head whose output is zero predicts
    the flow that ends at ``source`` (N, C): (z_t - source) / t, the exact velocity eps - source of a target equal
    to its source (z_t = (1 - t) source + t eps). Float32.

    What the head then learns is the rest. A velocity head (``prediction`` "velocity") adds its output to that
    velocity, so for a token the edit changes by d it must output d / t, ten times d at t = 0.1. A clean-latent head
    ("x") adds its output to the source instead (x_hat = source + output, whose velocity is (z_t - x_hat) / t): the
    added velocity is then -source / t, and the head outputs d itself at every t."""
    # t held at CLEAN_MIN_TIME or more (samplers evaluate t >= 1 / steps; training draws less about once in 10^4),
    # the clean-latent head's own clamp: with the same one its x_hat is exactly source + output at every t.
    tc = t.float().clamp_min(CLEAN_MIN_TIME)[:, None]
    if prediction == "x":
        return -source.float() / tc
    return (z_t.float() - source.float()) / tc


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
        _zero_linear(self.proj)


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


class AdaLNAttentionBlock(nn.Module):
    """x + gate * Attention(modulate(LN(x), shift, scale)) among the tokens of visual blocks (n, L, W), the three
    from the per-token condition c (n, L, W)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return x + gate * self.attn(modulate(self.norm(x), shift, scale), layout)


Grid = tuple[int, int, int]  # (latent steps, rows, columns) of one visual block
HEAD_DIM = 64  # the attention layers' head width (fewer heads where the head is narrow)
ROPE_THETA = 10000.0
ATTENTION_INPUTS = ("latent", "condition")  # what the head's attention layers read (module docstring)


def _check_attention_width(width: int, heads: int) -> None:
    if width % heads or (width // heads) % 2:  # RoPE rotates pairs of channels
        raise ValueError(f"a flow head width of {width} does not split into {heads} heads of even width")


class FlowHead(nn.Module):
    def __init__(
        self,
        hidden_dim: int,
        latent_channels: int,
        width: int,
        depth: int,
        time_dim: int,
        prediction: str = "velocity",
        attention_layers: int = 0,
        step_attention: str = "full",
        attention_input: str = "latent",
        source_input: bool = False,
    ) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"the flow head predicts one of {PREDICTIONS}, got {prediction!r}")
        if attention_input not in ATTENTION_INPUTS:
            raise ValueError(f"the flow head's attention reads one of {ATTENTION_INPUTS}, got {attention_input!r}")
        if step_attention not in ("full", "causal"):
            raise ValueError(f"attention across latent steps is 'full' or 'causal', got {step_attention!r}")
        self.attention_heads = heads = max(1, width // HEAD_DIM)
        if attention_layers:
            _check_attention_width(width, heads)
        self.prediction = prediction
        self.step_attention = step_attention
        self.attention_input = attention_input
        self.attention_head_dim = width // heads
        self.attention = nn.ModuleList(AdaLNAttentionBlock(width, heads) for _ in range(attention_layers))
        # Training may hold the attention layers out for its first steps (they get no gradient and keep their zero
        # gates meanwhile): hydra_x.train.unified.loop, head_attention_from_step.
        self.use_attention = True
        self.z_proj = nn.Linear(latent_channels, width)
        # An edit's source latent at each target token, beside the noisy one (InstructPix2Pix's concatenation, as a
        # sum): no bias, so a token without a source (zeros) gets nothing; zero at the start (init_zero).
        self.source_proj = nn.Linear(latent_channels, width, bias=False) if source_input else None
        self.cond_proj = nn.Linear(hidden_dim, width)
        self.time_embed = TimeEmbedding(width, time_dim)
        self.blocks = nn.ModuleList(AdaLNResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, latent_channels)

    @torch.no_grad()
    def init_zero(self) -> None:
        """adaLN-Zero: modulations and the output layer start at zero."""
        for layer in (*(block.modulation[-1] for block in (*self.attention, *self.blocks)), self.final_modulation[-1]):
            _zero_linear(layer)
        _zero_linear(self.out)
        if self.source_proj is not None:
            _zero_linear(self.source_proj)

    @torch.no_grad()
    def add_attention_layers(self, count: int) -> None:
        """Append ``count`` attention layers whose gates start at zero, so that the head's output does not change:
        a trained per-token head gains them and goes on training."""
        if count < 0:
            raise ValueError(f"cannot add {count} attention layers")
        width, heads, reference = self.z_proj.out_features, self.attention_heads, self.z_proj.weight
        _check_attention_width(width, heads)
        for _ in range(count):
            layer = AdaLNAttentionBlock(width, heads).to(device=reference.device, dtype=reference.dtype)
            init_weights(layer, 0.02)
            _zero_linear(layer.modulation[-1])  # shift, scale and gate: the gate at zero makes the layer a no-op
            self.attention.append(layer)

    def forward(
        self,
        hidden: torch.Tensor,
        z_t: torch.Tensor,
        t: torch.Tensor,
        grids: Sequence[Grid] | None = None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden (N, D_llm), z_t (N, C), t (N,): one row per visual token -> velocity (N, C). ``grids``: the
        (steps, rows, columns) of the blocks the N tokens make up, in order (step-major, row-major tokens in each);
        a head with attention layers needs them. ``source`` (N, C): an edit source's clean latent at each target
        token, zeros elsewhere; read by a head built with ``source_input`` (None: zeros), refused by one without."""
        projected = self.cond_proj(hidden)
        c = projected + self.time_embed(t).to(hidden.dtype)  # (N, W)
        x = self.z_proj(z_t.to(hidden.dtype))
        if self.source_proj is not None:
            # Run on every call, zeros included, so that every process of a sharded run uses the layer alike.
            x = x + self.source_proj((torch.zeros_like(z_t) if source is None else source).to(hidden.dtype))
        elif source is not None:
            raise ValueError("this flow head has no source input (UnifiedConfig.edit_source_input)")
        if len(self.attention) and self.use_attention:
            if grids is None:
                raise ValueError("a flow head with attention layers needs the grid of each visual block")
            if self.attention_input == "condition":  # only the layers' gated residuals join the latents' stream
                x = x + (self._attend(projected, c, grids) - projected)
            else:
                x = self._attend(x, c, grids)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        out = self.out(modulate(self.final_norm(x), shift, scale))
        if self.prediction == "x":  # float32: the division by t would magnify bf16's rounding of x_hat
            return velocity_from_clean(z_t.float(), t.float(), out.float())
        return out

    def _attend(self, x: torch.Tensor, c: torch.Tensor, grids: Sequence[Grid]) -> torch.Tensor:
        """The attention layers over each block's tokens: blocks of one grid run as one batch."""
        lengths = [s * h * w for s, h, w in grids]
        if sum(lengths) != x.shape[0]:
            raise ValueError(f"the blocks' grids {list(grids)[:4]}... hold {sum(lengths)} tokens, not {x.shape[0]}")
        starts = [0, *accumulate(lengths)][:-1]  # each block's first token
        groups: dict[Grid, list[int]] = {}
        for i, grid in enumerate(grids):
            groups.setdefault(tuple(grid), []).append(i)
        order, outputs = [], []
        for (steps, h, w), members in groups.items():
            length = steps * h * w
            # Built on the host and copied asynchronously: a training step must not wait for the GPU here.
            index = to_device_async(token_runs([starts[i] for i in members], [length] * len(members)), x.device)
            rope = rope_table(steps, h, w, self.attention_head_dim, ROPE_THETA, x.device)
            layout = TokenLayout(steps, h, w, self.step_attention, rope=rope)
            xg, cg = x[index].view(len(members), length, -1), c[index].view(len(members), length, -1)
            for layer in self.attention:
                xg = layer(xg, cg, layout)
            order.append(index)
            outputs.append(xg.flatten(0, 1))
        return x.index_copy(0, torch.cat(order), torch.cat(outputs))
