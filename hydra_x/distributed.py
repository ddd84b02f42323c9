"""Process groups: one process or many (torchrun, any number of nodes through its rendezvous).

Training, evaluation and serving share this; how a model is sharded lives with training (hydra_x.train.parallel).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto", *, single_process_group: bool = False) -> DistInfo:
    """Initialise the process group when launched by torchrun (NCCL on GPU, gloo on CPU).

    ``single_process_group`` also makes a group of one process outside torchrun: FSDP2 needs one, and on a
    single GPU it is what gives bf16 compute weights (cast once per step) instead of autocast's casts.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = datetime.timedelta(minutes=30)
        dist.init_process_group(backend, timeout=timeout, device_id=dev if dev.type == "cuda" else None)
    elif world == 1 and single_process_group and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return DistInfo(rank, world, local_rank, dev)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_max(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


class LaggedMax:
    """The max over processes of a value each process gives once a step, answered a step later: the values are
    all-reduced without waiting, and read back at the next call. A collective read back at once would make the host
    wait for the device every step (a host-bound step's whole time); this keeps the host a step ahead. Every process
    gets the same answer at the same call. One process: its own value, at once."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pending: tuple[torch.Tensor, dist.Work] | None = None

    def __call__(self, value: float) -> float | None:
        """The max of the values given at the previous call (None at the first); queues ``value``'s."""
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return value
        answer = self.settle()
        # filled on the device, not copied from the host: a copy from pageable memory would wait for the device
        values = torch.zeros(1, dtype=torch.float64, device=self.device).fill_(value)
        self._pending = (values, dist.all_reduce(values, op=dist.ReduceOp.MAX, async_op=True))
        return answer

    def settle(self) -> float | None:
        """The pending answer, waited for (None if there is none); nothing stays queued."""
        if self._pending is None:
            return None
        values, work = self._pending
        self._pending = None
        work.wait()
        return float(values.item())


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    if not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.AVG if t.is_cuda else dist.ReduceOp.SUM)
    if not t.is_cuda:
        t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))
