"""What the tokenizer's forward pass and its pair encoding return."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hydra_x.tokenizer.bottleneck import DiagonalGaussian


@dataclass
class TokenizerOutput:
    """Everything a training step needs from one forward pass."""

    x_rec: torch.Tensor | None  # reconstruction, x's shape (None with reconstruct=False)
    z: torch.Tensor  # (B, C, S, h, w) the normalised latent that was decoded (a sample in training)
    posterior: DiagonalGaussian  # over the raw latent, (B, C, S, h, w)
    s: torch.Tensor | None  # (B, S, N, D) semantic tokens (None with semantic=False)
    h: torch.Tensor  # (B, S, N, D) Gen-ViT output before the bottleneck
    h_restored: torch.Tensor | None  # (B, S, N, D) the un-projected latent, the Sem-ViT's input
    image_features: torch.Tensor | None  # (B, N, D_img) image head on the anchor step of s
    video_features: torch.Tensor | None  # (B, T, N, D_vid) Decompressor + video head; None for images
    # forward(feature_layers=...): k -> (B, S_k, N, D) hidden state k of the whole ViT (see forward).
    layer_features: dict[int, torch.Tensor] | None = None
    # Flow decoder, training forward (flow_t given): x_rec is then the clean estimate x_t - t v.
    velocity: torch.Tensor | None = None  # x's shape: the decoder's velocity prediction at (x_t, t)
    velocity_target: torch.Tensor | None = None  # x's shape: eps - x, the flow-matching target


@dataclass
class PairEncoding:
    """Source-Target Interaction: an editing pair encoded as a 2-step clip."""

    z: torch.Tensor  # (B, C, 2, h, w): step 0 the source, step 1 the target; Gen-ViT saw each alone
    s: torch.Tensor  # (B, 2, N, D): the Sem-ViT ran over [z_src; z_tgt] with its causal mask
