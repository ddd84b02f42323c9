"""Transformer building blocks: a pre-norm ViT block whose attention knows the token layout.

The block's parameter names and maths match SigLIP's encoder layer (LayerNorm, biased q/k/v/out,
GELU-tanh MLP), so SigLIP 2 weights load into it and give the same hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.nn.attention import spatiotemporal_attention
from hydra_x.nn.rope import RopeTable, apply_rope


@dataclass
class TokenLayout:
    """How the flat token sequence (B, L, D) is laid out, and how attention treats it."""

    steps: int
    height: int
    width: int
    mode: str  # full | causal | tubelet | none
    impl: str = "auto"
    rope: RopeTable | None = None

    @property
    def tokens_per_step(self) -> int:
        return self.height * self.width


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, rope_scale: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        # Per-head, per-axis (t, h, w) RoPE angle scale; see hydra_x.nn.rope.
        self.rope_scale = nn.Parameter(torch.ones(3, heads)) if rope_scale else None

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        b, length, dim = x.shape
        qkv = self.qkv(x).view(b, length, 3, self.heads, self.head_dim)
        if layout.rope is not None:
            cos, sin = layout.rope.cos_sin(self.rope_scale)  # (L, H or 1, Dh / 2)
            # Rotate q and k in one pass: (B, L, 2, H, Dh).
            qk = apply_rope(qkv[:, :, :2], cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype))
            q, k, v = qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]
        else:
            q, k, v = qkv.unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        out = spatiotemporal_attention(q, k, v, layout.mode, layout.steps, layout.impl)
        return self.proj(out.transpose(1, 2).reshape(b, length, dim))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str = "gelu_tanh") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.approximate = "tanh" if act == "gelu_tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_dim: int,
        *,
        eps: float = 1e-6,
        act: str = "gelu_tanh",
        qkv_bias: bool = True,
        rope_scale: bool = False,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias=qkv_bias, rope_scale=rope_scale)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, mlp_dim, act)
        # Per-channel layer scale on both branches (CaiT; InternViT's lambda_1 / lambda_2); None: off.
        self.layer_scale_init = layer_scale
        self.ls1 = nn.Parameter(torch.ones(dim)) if layer_scale is not None else None
        self.ls2 = nn.Parameter(torch.ones(dim)) if layer_scale is not None else None

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        if self.ls1 is None:
            x = x + self.attn(self.norm1(x), layout)
            return x + self.mlp(self.norm2(x))
        x = x + self.ls1 * self.attn(self.norm1(x), layout)
        return x + self.ls2 * self.mlp(self.norm2(x))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Initialise every parameter this file's modules (and plain Linear/LayerNorm) own.

    Called after a model built on the meta device is materialised, so it must touch every parameter.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, Attention) and m.rope_scale is not None:
            nn.init.ones_(m.rope_scale)
        elif isinstance(m, Block) and m.ls1 is not None:
            nn.init.constant_(m.ls1, m.layer_scale_init)
            nn.init.constant_(m.ls2, m.layer_scale_init)
