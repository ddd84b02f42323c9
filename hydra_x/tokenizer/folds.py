"""Patchify and the hierarchical temporal folds, with their exact inverses for the decoder.

A fold of factor f concatenates f consecutive time steps along the channels and maps them with one
linear layer (a temporal convolution of kernel f, stride f). A clip has 1 + T frames; the anchor is
zero-padded with f - 1 steps *before* it, so the anchor goes through the same operation as every other
group. Both starts put the weights on the *last* step of each group and zeros on the others: the
pretrained start the tower's patch embedding and the identity, the start from scratch a random frame
embedding and the identity. So an image (the anchor alone, its group being [0, ..., 0, anchor]) passes fold
1 as a plain 2D patch embedding and fold 2 unchanged, and each group of a clip starts as its last frame
(the zero weights get gradients from the other frames of a clip and learn to use them). A random projection
of the whole group instead would make the anchor's token after fold 2 a random mix of its features.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange


def pad_anchor(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Prepend ``factor - 1`` zero steps along ``dim``."""
    if factor == 1:
        return x
    shape = list(x.shape)
    shape[dim] = factor - 1
    return torch.cat((x.new_zeros(shape), x), dim=dim)


class PatchFold(nn.Module):
    """Spatio-temporal patchify: pixels (B, C, F, H, W) -> tokens (B, S, N, D), S = 1 + (F - 1) / factor."""

    def __init__(self, in_channels: int, patch: int, factor: int, dim: int) -> None:
        super().__init__()
        self.patch, self.factor = patch, factor
        self.proj = nn.Linear(factor * in_channels * patch * patch, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_anchor(x, self.factor, dim=2)
        p, f = self.patch, self.factor
        x = rearrange(x, "b c (s f) (h p) (w q) -> b s (h w) (f c p q)", f=f, p=p, q=p)
        return self.proj(x)

    @torch.no_grad()
    def keep_last_frame_only(self) -> None:
        """From a random init: zero the weights of every frame but the last of each group, and the bias, so the
        last frame keeps a random frame embedding (its values unchanged: no new random draw)."""
        d = self.proj.out_features
        self.proj.weight.view(d, self.factor, -1)[:, :-1].zero_()
        self.proj.bias.zero_()

    @torch.no_grad()
    def load_frame_embedding(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Start from a 2D patch embedding (D, C, p, p): the last frame of each group gets it, the rest 0."""
        d = weight.shape[0]
        w = self.proj.weight.view(d, self.factor, -1)
        w.zero_()
        w[:, -1] = weight.reshape(d, -1).to(w)
        if bias is not None:
            self.proj.bias.copy_(bias)
        else:
            self.proj.bias.zero_()


def frame_difference(dim: int, factor: int, size: int, shared: bool) -> nn.Linear | None:
    """An unfold's learnt differences of the frames before each group's last from the last frame's map
    (``shared``), starting at zero; None for a map per frame.

    With a map per frame, pictures (each the last frame of its group) train only the last frame's map, and the
    maps of the frames between latent steps learn from clips alone. Shared, every frame is the last frame's map
    plus its difference, so a group decodes as copies of its last frame until clips teach it motion.
    """
    return None if not shared or factor == 1 else _zeroed(nn.Linear(dim, (factor - 1) * size))


@torch.no_grad()
def _zeroed(linear: nn.Linear) -> nn.Linear:
    linear.weight.zero_()
    linear.bias.zero_()
    return linear


def zero_frame_differences(module: nn.Module) -> None:
    """Zero the shared unfolds' frame differences in ``module`` (after a generic re-initialisation)."""
    for unfold in module.modules():
        if isinstance(unfold, (PatchUnfold, TokenUnfold)) and unfold.delta is not None:
            _zeroed(unfold.delta)


def per_frame(proj: nn.Linear, delta: nn.Linear | None, x: torch.Tensor, factor: int) -> torch.Tensor:
    """(..., dim) -> (..., factor * size), frame-major with the last frame last."""
    last = proj(x)
    if delta is None:
        return last
    others = delta(x).unflatten(-1, (factor - 1, last.shape[-1])) + last.unsqueeze(-2)
    return torch.cat((others.flatten(-2), last), dim=-1)


class PatchUnfold(nn.Module):
    """Inverse of PatchFold: tokens (B, S, N, D) -> pixels (B, C, 1 + (S - 1) * factor, H, W)."""

    def __init__(self, dim: int, out_channels: int, patch: int, factor: int, shared: bool = False) -> None:
        super().__init__()
        self.patch, self.factor, self.out_channels = patch, factor, out_channels
        size = out_channels * patch * patch
        self.proj = nn.Linear(dim, (1 if shared else factor) * size)
        self.delta = frame_difference(dim, factor, size, shared)

    def forward(self, x: torch.Tensor, grid_height: int) -> torch.Tensor:
        p, f = self.patch, self.factor
        x = per_frame(self.proj, self.delta, x, f)
        x = rearrange(x, "b s (h w) (f c p q) -> b c (s f) (h p) (w q)", h=grid_height, f=f, p=p, q=p)
        return x[:, :, f - 1 :]  # drop the anchor's padding frames


class TokenFold(nn.Module):
    """Temporal fold on tokens: (B, S, N, D) -> (B, 1 + (S - 1) / factor, N, D)."""

    def __init__(self, dim: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.proj = nn.Linear(factor * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_anchor(x, self.factor, dim=1)
        return self.proj(rearrange(x, "b (s f) n d -> b s n (f d)", f=self.factor))

    @torch.no_grad()
    def init_identity_on_last(self) -> None:
        """Identity on the last step of each group, zero elsewhere: an image passes unchanged."""
        d = self.proj.out_features
        w = self.proj.weight.view(d, self.factor, d)
        w.zero_()
        w[:, -1].copy_(torch.eye(d))
        self.proj.bias.zero_()


class TokenUnfold(nn.Module):
    """Inverse of TokenFold: (B, S, N, D) -> (B, 1 + (S - 1) * factor, N, D)."""

    def __init__(self, dim: int, factor: int, shared: bool = False) -> None:
        super().__init__()
        self.factor = factor
        self.proj = nn.Linear(dim, (1 if shared else factor) * dim)
        self.delta = frame_difference(dim, factor, dim, shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(per_frame(self.proj, self.delta, x, self.factor), "b s n (f d) -> b (s f) n d", f=self.factor)
        return x[:, self.factor - 1 :]
