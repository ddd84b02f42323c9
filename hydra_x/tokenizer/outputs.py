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


# encode_pair's layouts -> the Sem-ViT's attention mode over the 2-step clip [source; target]. Fixed here rather
# than taken from the model's sem_attention: a `full` model would let the source see the target, a `none` model
# would silently drop the interaction. On two steps `tubelet` is `causal`: the target sees the source.
PAIR_LAYOUTS = {"sti": "tubelet", "independent": "none"}


@dataclass
class PairEncoding:
    """An editing pair encoded as a 2-step clip (``HydraXTokenizer.encode_pair``)."""

    z: torch.Tensor  # (B, C, 2, h, w): step 0 the source, step 1 the target; the Gen-ViT saw each alone
    s: torch.Tensor  # (B, 2, N, D): the Sem-ViT over [z_src; z_tgt] under `layout`
    layout: str = "sti"  # sti: the target's s sees the source, never the reverse; independent: no attention across
