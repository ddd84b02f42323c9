"""What the step-based loaders share: whole steps built in DataLoader workers (step s in worker slot s mod W),
in the main process when there are none, with one torch thread while building."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

# produce(spec, start, worker, workers) -> the items of steps start, start + 1, ... that fall to ``worker``
Producer = Callable[[Any, int, int, int], Iterator]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread while building (as in DataLoader workers): the tensors are small, and more threads only
    contend with the training step's (badly, on a shared CPU) when num_workers is 0."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class StepStream(IterableDataset):
    """A DataLoader dataset whose workers each run ``produce`` for their own slot of steps."""

    def __init__(self, produce: Producer, spec: Any, start: int) -> None:
        self.produce, self.spec, self.start = produce, spec, start

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.produce(self.spec, self.start, worker, workers)


def _identity(x):
    return x


def step_stream(
    produce: Producer,
    spec: Any,
    start: int,
    *,
    num_workers: int,
    mp_context: str,
    preload: str,
    prefetch_factor: int,
    pin_memory: bool = False,
) -> Iterator:
    """The items of every step from ``start``, in step order: in this process without workers, else from a
    DataLoader whose workers start by ``mp_context`` (a fork server preloads the module ``preload``)."""
    if num_workers == 0:
        return produce(spec, start, 0, 1)
    ctx = mp.get_context(mp_context)
    if mp_context == "forkserver":
        ctx.set_forkserver_preload([preload])
    loader = DataLoader(
        StepStream(produce, spec, start),
        batch_size=None,
        num_workers=num_workers,
        multiprocessing_context=ctx,
        collate_fn=_identity,
        prefetch_factor=prefetch_factor,
        pin_memory=pin_memory,
    )
    return iter(loader)
