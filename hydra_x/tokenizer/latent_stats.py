"""The statistics that normalise the tokenizer's latents (``HydraXTokenizer.set_latent_stats``), measured on data.

Two users:

- the tokenizer's stage 3: per-channel mean and standard deviation (every channel at unit scale);
- a unified run that starts from a tokenizer without statistics (trained through stages 1-2 only): the flow
  generates in the normalised space and starts from unit noise, so the latents it must reach need unit scale too.
  A raw latent of simple pictures varies far less than that in most channels, and a model trained on it learns to
  denoise almost nothing of what a prompt should change. There one standard deviation over all channels
  (``shared_std``) keeps the channels' relative scale: a near-constant channel is not blown up to unit noise.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist

from hydra_x.tokenizer.model import HydraXTokenizer


@torch.no_grad()
def measure_latent_stats(
    model: HydraXTokenizer,
    batches: Iterable[torch.Tensor],
    device: torch.device,
    *,
    shared_std: bool = False,
    all_processes: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (C,), std (C,)) of the raw latent (the posterior mean) over ``batches`` of pixels (B, 3, H, W) or
    (B, 3, F, H, W); with ``all_processes``, over the batches of every process when torch.distributed is
    initialised. Measure before statistics are set (``HydraXTokenizer.has_latent_stats`` false): the encoder then
    returns raw latents."""
    c = model.config.latent_channels
    sums = torch.zeros(3, c, dtype=torch.float64, device=device)  # count, sum, sum of squares per channel
    for pixels in batches:
        _, posterior = model.encode(pixels.to(device), return_posterior=True)
        z = posterior.mean.double().movedim(1, -1).reshape(-1, c)  # (B * S * h * w, C)
        sums += torch.stack(
            (torch.full((c,), float(z.shape[0]), device=device, dtype=torch.float64), z.sum(0), z.square().sum(0))
        )
    if all_processes and dist.is_initialized():
        dist.all_reduce(sums)
    count, total, squares = sums
    if not bool((count > 0).all()):
        raise ValueError("no latents to measure: the batches were empty")
    mean = total / count
    variance = (squares / count - mean.square()).clamp_min(1e-12)
    if shared_std:  # pooled around each channel's own mean
        variance = (variance * count).sum().div(count.sum()).expand(c)
    return mean.float(), variance.sqrt().float()
