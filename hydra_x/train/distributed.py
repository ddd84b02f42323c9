"""Process groups and FSDP2, applied from outside the model.

One process or many (torchrun, any number of nodes through its rendezvous). ``parallelize_tokenizer``
is the one place that knows how the tokenizer is sharded: every transformer block is its own FSDP2
unit, then the root; activation checkpointing and torch.compile wrap the blocks first.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


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


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    if not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.AVG if t.is_cuda else dist.ReduceOp.SUM)
    if not t.is_cuda:
        t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def tokenizer_blocks(model: nn.Module) -> list[tuple[nn.ModuleList, int]]:
    """(ModuleList, index) of every transformer block of the tokenizer."""
    lists = [model.gen_vit.blocks, model.sem_vit.blocks, model.decoder.blocks]
    if model.decompressor is not None:
        lists.append(model.decompressor.blocks)
    return [(blocks, i) for blocks in lists for i in range(len(blocks))]


BLOCK_RECOMPILE_LIMIT = 128


def allow_block_recompiles(limit: int = BLOCK_RECOMPILE_LIMIT) -> None:
    """Raise torch.compile's per-function graph limit (default 8) to ``limit``.

    Every block runs the same ``Block.forward``, and each token layout is its own static graph: images,
    clips before and after fold 2, the Decompressor's, the same again under no_grad for the held-out
    evaluation, times the aspect-ratio buckets. With 8 a `small` run's evaluation fell back to eager mode
    ("hit config.recompile_limit").
    """
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
    setattr(config, name, max(getattr(config, name), limit))


def parallelize_tokenizer(
    model: nn.Module,
    *,
    fsdp: bool,
    param_dtype: torch.dtype | None,
    activation_checkpointing: bool = False,
    compile_blocks: bool = False,
    compile_mode: str = "default",
) -> nn.Module:
    """Wrap blocks with activation checkpointing / compile, then shard blocks and root with FSDP2.

    Blocks compile with static shapes: a few token layouts recur all run long, and torch.compile's automatic
    dynamic shapes (the default after a second layout) give every kernel launch symbolic-size arithmetic on
    the host, which is what bounds the step of a clip batch. ``compile_mode="reduce-overhead"`` also captures
    each block's kernels as CUDA graphs (the loop then marks every step's start).
    """
    if compile_blocks:
        allow_block_recompiles()
    for blocks, i in tokenizer_blocks(model):
        block = blocks[i]
        if activation_checkpointing:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

            block = checkpoint_wrapper(block)
        if compile_blocks:
            block.compile(mode=compile_mode, dynamic=False)
        blocks[i] = block
    if not fsdp:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = data_parallel_mesh()
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for blocks, i in tokenizer_blocks(model):
        fully_shard(blocks[i], mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def data_parallel_mesh():
    from torch.distributed.device_mesh import init_device_mesh

    device_type = "cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
    return init_device_mesh(device_type, (dist.get_world_size(),))


def shard_module(module: nn.Module, param_dtype: torch.dtype | None) -> nn.Module:
    """FSDP2 for a small auxiliary module (the discriminator) with its own optimizer."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    fully_shard(module, mesh=data_parallel_mesh(), mp_policy=mp)
    return module
