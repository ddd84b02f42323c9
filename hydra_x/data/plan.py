"""The per-step plan of the tokenizer's data stream: which source, and which of its bucket groups, each
global step draws from. It needs no data and is the same on every rank (see :mod:`hydra_x.data.loader`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np

from hydra_x.data.buckets import hash_uniform
from hydra_x.data.config import DataConfig

_TAG_SOURCE, _TAG_GROUP = 1, 2
_CHUNK = 1 << 16  # steps planned at once


def _cumulative(weights: np.ndarray) -> np.ndarray:
    cum = np.cumsum(weights, dtype=np.float64)
    cum /= cum[-1]
    cum[cum >= 1.0 - 1e-15] = 1.0  # hashed uniforms are < 1: a zero weight at the end is never chosen
    return cum


def step_sources(config: DataConfig, steps: np.ndarray | list[int]) -> np.ndarray:
    """The source index each global step draws its batch from (needs no data; same on every rank)."""
    steps = np.asarray(steps, dtype=np.int64)
    cum = _cumulative(np.array([s.weight for s in config.sources], dtype=np.float64))
    return np.searchsorted(cum, hash_uniform(config.seed, _TAG_SOURCE, steps), side="right")


def step_kinds(config: DataConfig, steps: np.ndarray | list[int]) -> list[str]:
    """'image' or 'video' for each global step."""
    return [config.sources[int(i)].media for i in step_sources(config, steps)]


class StepPlan:
    """(source, bucket group) of every step, and how many earlier steps chose the same pair."""

    def __init__(self, config: DataConfig, group_weights: list[np.ndarray | None]):
        self.config = config
        self.cum_groups = [None if w is None else _cumulative(w) for w in group_weights]

    def choose(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        src = step_sources(self.config, steps)
        u = hash_uniform(self.config.seed, _TAG_GROUP, steps)
        group = np.full(len(steps), -1, dtype=np.int64)
        for s, cum in enumerate(self.cum_groups):
            if cum is not None:
                m = src == s
                group[m] = np.searchsorted(cum, u[m], side="right")
        return src, group

    def counts_before(self, step: int) -> Counter:
        counts: Counter = Counter()
        for lo in range(0, step, _CHUNK):
            src, group = self.choose(np.arange(lo, min(step, lo + _CHUNK), dtype=np.int64))
            pairs, n = np.unique(np.stack([src, group], 1), axis=0, return_counts=True)
            for (s, g), c in zip(pairs.tolist(), n.tolist()):
                counts[(s, g)] += c
        return counts

    def walk(self, start: int) -> Iterator[tuple[int, int, int, int]]:
        """(step, source, group, index of this batch among the pair's batches) from ``start`` on."""
        counts = self.counts_before(start)
        lo = start
        while True:
            src, group = self.choose(np.arange(lo, lo + _CHUNK, dtype=np.int64))
            for i, (s, g) in enumerate(zip(src.tolist(), group.tolist())):
                j = counts[(s, g)]
                counts[(s, g)] = j + 1
                yield lo + i, s, g, j
            lo += _CHUNK
