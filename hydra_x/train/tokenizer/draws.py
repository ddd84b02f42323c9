"""The tokenizer step's random draws, each a function of the global sample index (see hydra_x.train.seeding)."""

from __future__ import annotations

import torch
import torch.nn as nn

from hydra_x.nn.flow import time_from_normal
from hydra_x.train.seeding import per_sample_normal

FLOW_STREAM = 1  # a fourth key element: the flow decoder's draws differ from the posterior noise's


def posterior_noise(x: torch.Tensor, model_config, seed: int, micro_step: int, first_index: int) -> torch.Tensor:
    """Standard-normal draws (B, S, N, C) for the posterior samples of pixels ``x``, on x's device.

    On the CPU a clip batch's draws cost ~80 ms of host time per step next to busy data workers; on the GPU
    they cost nothing.
    """
    frames = x.shape[2] if x.ndim == 5 else 1
    p = model_config.patch_size
    shape = (model_config.latent_steps(frames), (x.shape[-2] // p) * (x.shape[-1] // p), model_config.latent_channels)
    return per_sample_normal(shape, x.shape[0], x.device, seed, micro_step, first_index)


def flow_draws(
    x: torch.Tensor, loss_config, seed: int, micro_step: int, first_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow decoder's noise (x's shape, on x's device: pixel noise is large) and times (B,)."""
    noise = per_sample_normal(tuple(x.shape[1:]), x.shape[0], x.device, seed, micro_step, first_index, FLOW_STREAM)
    normals = per_sample_normal((), x.shape[0], torch.device("cpu"), seed, micro_step, first_index, FLOW_STREAM)
    t = time_from_normal(normals, loss_config.flow_time, loss_config.flow_time_mean, loss_config.flow_time_std)
    return noise, t.to(x.device, non_blocking=True)  # no stream sync: a pageable copy is staged first


def heldout_flow_noise(model: nn.Module, x: torch.Tensor | None) -> torch.Tensor | None:
    """Fixed sampler noise for held-out reconstructions with a flow decoder (None otherwise): comparable evals."""
    if x is None or model.config.decoder != "flow":
        return None
    return torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(x.device)
