"""Adversarial loss: a PatchGAN discriminator, hinge losses, VQGAN's adaptive weight and a start step.

Discriminator: the pix2pix / taming-transformers ``NLayerDiscriminator`` layout (4x4 convs, LeakyReLU 0.2,
channel multipliers 1, 2, 4, 8 capped at 8, a stride-1 penultimate conv and a 1-channel logit map). With 3
layers each logit sees a 70x70 pixel patch: several 16x16 patches of a ViT decoder, so it can judge the
texture and the seams between decoder patches that L1 and LPIPS leave blurry. Two departures, so it trains
under FSDP with small per-GPU batches: BatchNorm is replaced by GroupNorm (``norm="group"``, batch-size
independent, no running statistics to synchronise), or by no norm with spectral normalisation on every
conv (``norm="spectral"``). Clips are judged frame by frame (time folded into the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

NORMS = ("group", "spectral", "none")


@dataclass
class DiscriminatorConfig:
    in_channels: int = 3
    channels: int = 64  # width of the first conv; later ones multiply it by 2, 4, 8 (capped at 8)
    layers: int = 3  # strided conv blocks after the first conv; 3 gives a 70x70 receptive field
    norm: str = "group"  # "group" | "spectral" | "none"
    groups: int = 32  # GroupNorm groups (reduced to a divisor of the channels)
    init_std: float = 0.02  # taming's weights_init: conv N(0, 0.02), norm gain N(1, 0.02)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; got {self.norm!r}")
        if self.layers < 1 or self.channels < 1:
            raise ValueError("layers and channels must be positive")


class PatchDiscriminator(nn.Module):
    """Pixels in [-1, 1] -> a map of real/fake logits: (B, 3, H, W) -> (B, 1, h, w); (B, 3, T, H, W) ->
    (B, 1, T, h, w). For 256^2 inputs and 3 layers, h = w = 30."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or DiscriminatorConfig()
        c, blocks = cfg.channels, []
        blocks += [self._conv(cfg.in_channels, c, stride=2, bias=True), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, cfg.layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < cfg.layers else 1
            # A conv bias before GroupNorm is cancelled by the normalisation: leave it out (as taming with BN).
            blocks += [self._conv(c * prev, c * mult, stride=stride, bias=cfg.norm != "group")]
            if cfg.norm == "group":
                blocks.append(nn.GroupNorm(math.gcd(cfg.groups, c * mult), c * mult))
            blocks.append(nn.LeakyReLU(0.2))
        blocks.append(self._conv(c * mult, 1, stride=1, bias=True))
        self.net = nn.Sequential(*blocks)
        self.init_weights()

    def _conv(self, cin: int, cout: int, *, stride: int, bias: bool) -> nn.Module:
        conv = nn.Conv2d(cin, cout, kernel_size=4, stride=stride, padding=1, bias=bias)
        return spectral_norm(conv) if self.config.norm == "spectral" else conv

    @torch.no_grad()
    def init_weights(self) -> None:
        """The discriminator's own init (taming's), kept apart from any model-wide init of the tokenizer."""
        std = self.config.init_std
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if parametrize.is_parametrized(m, "weight"):
                    nn.init.normal_(m.parametrizations.weight.original, 0.0, std)
                    sn = m.parametrizations.weight[0]  # restart the power iteration on the new weight
                    sn._u.normal_()
                    sn._v.normal_()
                    sn._u.copy_(F.normalize(sn._u, dim=0, eps=sn.eps))
                    sn._v.copy_(F.normalize(sn._v, dim=0, eps=sn.eps))
                    sn._power_method(sn._reshape_weight_to_matrix(m.parametrizations.weight.original), 15)
                else:
                    nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.GroupNorm):
                nn.init.normal_(m.weight, 1.0, std)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:  # (B, C, T, H, W): frame by frame
            t = x.shape[2]
            logits = self.net(rearrange(x, "b c t h w -> (b t) c h w"))
            return rearrange(logits, "(b t) c h w -> b c t h w", t=t)
        if x.ndim != 4:
            raise ValueError(f"expected (B, C, H, W) or (B, C, T, H, W) pixels; got shape {tuple(x.shape)}")
        return self.net(x)


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss, 0.5 * (E[relu(1 - D(real))] + E[relu(1 + D(fake))]) (taming's scaling)."""
    return 0.5 * (F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean())


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss, -E[D(fake)]."""
    return -fake_logits.float().mean()


def _grad_norm(grad: torch.Tensor) -> torch.Tensor:
    """L2 norm of a gradient; a DTensor (sharded parameter) is gathered first so the norm is global."""
    full_tensor = getattr(grad, "full_tensor", None)  # torch.distributed.tensor.DTensor
    if callable(full_tensor):
        grad = full_tensor()
    return torch.linalg.vector_norm(grad.float())


def adaptive_gan_weight(
    rec_loss: torch.Tensor,
    gan_loss: torch.Tensor,
    last_layer_weight: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
    across_ranks: bool = False,
) -> torch.Tensor:
    """VQGAN's balance: ||d rec / d W|| / (||d gan / d W|| + eps), clamped to [0, max_weight], detached.

    ``last_layer_weight`` is the tensor W both losses are differentiated against: the decoder's last
    layer's weight, as in VQGAN. It must be the tensor the forward actually used. Under FSDP2 the
    registered (sharded) parameter is not in the graph during resharded forwards; pass the decoder output
    (e.g. ``x_rec``) instead, which is equivalent in spirit and free of sharding, or keep the last layer
    unsharded. DTensor gradients (tensor parallel) are gathered before their norm.
    Both gradients are taken with ``retain_graph=True``: the total loss is back-propagated afterwards.
    """
    (rec_grad,) = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)
    (gan_grad,) = torch.autograd.grad(gan_loss, last_layer_weight, retain_graph=True)
    rec_norm, gan_norm = _grad_norm(rec_grad), _grad_norm(gan_grad)
    if across_ranks and dist.is_initialized():
        # Data parallel with a per-rank activation (x_rec): the norms of the global batch's gradient, so
        # the weight is the same on every rank and equals a single process's on the whole batch.
        squares = torch.stack((rec_norm, gan_norm)).square()
        dist.all_reduce(squares)
        rec_norm, gan_norm = squares.sqrt().unbind()
    weight = rec_norm / (gan_norm + eps)
    return weight.clamp(0.0, max_weight).detach()


def gan_weight_at(step: int, start_step: int, warmup_steps: int = 0) -> float:
    """The GAN term's schedule: 0 before ``start_step``, then 1 (linearly ramped over ``warmup_steps``)."""
    if step < start_step:
        return 0.0
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step - start_step + 1) / warmup_steps)
