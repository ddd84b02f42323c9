"""The unified model's objective: next-token prediction on the assistant's text plus rectified flow on generated
latents, each a mean over every process's tokens, weighted 1 and 1 as in the paper.

The model returns sums and counts; the counts are summed across processes first, so each process's loss is
its share of the global mean (times the world size, because data-parallel training averages the gradients).
One process with a batch of 2B and two with B each then take the same step.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from hydra_x.train.engine import LossTerms
from hydra_x.unified.inputs import UnifiedOutput


def global_counts(out: UnifiedOutput, device: torch.device) -> tuple[float, float, int]:
    """(text tokens, flow elements) summed over processes, and the world size. One process needs no device round
    trip, which would make the host wait for the whole forward before it can queue the backward."""
    if not dist.is_initialized():
        return float(out.text_tokens), float(out.flow_elements), 1
    counts = torch.tensor([float(out.text_tokens), float(out.flow_elements)], dtype=torch.float64, device=device)
    dist.all_reduce(counts)
    return float(counts[0]), float(counts[1]), dist.get_world_size()


def unified_loss(out: UnifiedOutput, loss_config, device: torch.device) -> LossTerms:
    text_n, flow_n, world = global_counts(out, device)
    terms: dict[str, tuple[float, torch.Tensor]] = {}
    if text_n:
        terms["text"] = (loss_config.text, out.text_loss_sum * world / text_n)
    if flow_n:
        terms["flow"] = (loss_config.flow, out.flow_loss_sum * world / flow_n)
    if not terms:
        raise ValueError("a step with neither text to predict nor latents to generate: check the data mixture")
    total = sum(w * v for w, v in terms.values())
    # Logged values are the global means (this process's share times the world size, averaged by the log).
    return LossTerms(
        total=total,
        values={k: v.detach() for k, (_, v) in terms.items()},
        weights={k: float(w) for k, (w, _) in terms.items()},
    )
