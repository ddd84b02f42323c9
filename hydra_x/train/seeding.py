"""Random draws that depend on the global sample index alone, so a run gives the same losses on any number of GPUs.

Sample i of rank r in micro-step m is global sample r * B + i; its draws come from a generator seeded with
``sample_key(seed, m, r * B + i, stream)``. One process with a batch of 2B then draws exactly what two
processes with B each draw. The generators are created once per device and reseeded per draw (creating one
per draw costs host time).
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def sample_generator(device: torch.device) -> torch.Generator:
    return torch.Generator(device)


def sample_key(*parts: int) -> int:
    """A 63-bit seed from integers (hash of an int tuple is stable across processes and runs)."""
    return hash(parts) & (2**63 - 1)


def per_sample_normal(
    shape: tuple[int, ...],
    batch: int,
    device: torch.device,
    seed: int,
    micro_step: int,
    first_index: int,
    stream: int = 0,
) -> torch.Tensor:
    """(batch, *shape) standard-normal draws on ``device``, sample k seeded by its global index first_index + k."""
    out = torch.empty((batch, *shape), device=device)
    generator = sample_generator(device)
    for i in range(batch):
        parts = (seed, micro_step, first_index + i) + ((stream,) if stream else ())
        out[i].normal_(generator=generator.manual_seed(sample_key(*parts)))
    return out
