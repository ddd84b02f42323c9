"""3D rotary position embedding over (t, h, w).

The head dimension is split into rotation pairs; each pair belongs to one axis (time, height or width)
and rotates by ``position[axis] * inv_freq[pair] * scale[head, axis]``. The per-head, per-axis scale is
learnable (as in RoPE-Mixed, Heo et al. 2024): at 1 it is plain axial RoPE; at 0 the axis is switched off,
which is how a ViT pretrained without RoPE (SigLIP 2) starts exactly as it was.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Rotation pairs given to (t, h, w): the spatial axes share evenly, time takes the remainder."""
    pairs = head_dim // 2
    spatial = (pairs - pairs // 3) // 2
    return pairs - 2 * spatial, spatial, spatial


@dataclass(frozen=True)
class RopeTable:
    """Angles for one token layout, shared by every layer that runs on it (and every call: rope_table keeps
    them)."""

    base: torch.Tensor  # (L, P) position * inverse frequency, fp32
    axis: torch.Tensor  # (P,) which axis (0 t, 1 h, 2 w) each pair rotates with

    def cos_sin(self, scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of shape (L, H, P) for per-head scales (3, H), or (L, 1, P) without scales."""
        if scale is None:
            angles = self.base[:, None, :]
        else:
            per_pair = scale.float()[self.axis].t()  # (H, P)
            angles = self.base[:, None, :] * per_pair[None]
        return angles.cos(), angles.sin()


def rope_table(
    steps: int, height: int, width: int, head_dim: int, theta: float, device: torch.device | str
) -> RopeTable:
    """Angles for tokens laid out as (steps, height, width), row-major, time slowest. Kept per layout and device:
    a training step meets the same few layouts in every call, and building one costs some 25 operators, each a
    launch on a host-bound GPU step."""
    return _rope_table(steps, height, width, head_dim, float(theta), torch.device(device))


@functools.lru_cache(maxsize=64)
def _rope_table(steps: int, height: int, width: int, head_dim: int, theta: float, device: torch.device) -> RopeTable:
    # Plain tensors whatever the caller's mode: one made under inference_mode could not be saved for a backward.
    with torch.inference_mode(False), torch.no_grad():
        return _build_rope_table(steps, height, width, head_dim, theta, device)


def _build_rope_table(steps: int, height: int, width: int, head_dim: int, theta: float, device) -> RopeTable:
    counts = axis_pairs(head_dim)
    axis = torch.cat([torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(counts)])
    inv_freq = torch.cat([theta ** (-torch.arange(n, dtype=torch.float32, device=device) / max(n, 1)) for n in counts])
    t, h, w = torch.meshgrid(
        torch.arange(steps, device=device),
        torch.arange(height, device=device),
        torch.arange(width, device=device),
        indexing="ij",
    )
    positions = torch.stack([t, h, w], dim=-1).reshape(-1, 3).float()  # (L, 3)
    base = positions[:, axis] * inv_freq  # (L, P)
    return RopeTable(base=base, axis=axis)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., D) by angles whose cos / sin broadcast against (..., D/2).

    Pairs are (x[..., i], x[..., i + D/2]). The rotation runs in x's dtype (bf16 models rotate in bf16,
    as most RoPE implementations do); cos and sin are cast once.
    """
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
