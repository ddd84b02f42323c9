"""Activation checkpointing, torch.compile and FSDP2, applied from outside the model.

Each model family says which ``nn.ModuleList``s hold its transformer blocks (the tokenizer: Gen-ViT, Sem-ViT,
decoder, Decompressor; the unified model: the same plus the LLM's layers); ``parallelize`` does the rest the
same way for every family: wrap each block, then make each block an FSDP2 unit and the root the last one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

BLOCK_RECOMPILE_LIMIT = 128
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


def allow_block_recompiles(limit: int = BLOCK_RECOMPILE_LIMIT) -> None:
    """Raise torch.compile's per-function graph limit (default 8) to ``limit``.

    Every block runs the same ``forward``, and each token layout is its own static graph: images, clips before
    and after fold 2, the Decompressor's, the same again under no_grad for the held-out evaluation, times the
    aspect-ratio buckets. With 8 a `small` tokenizer run's evaluation fell back to eager mode
    ("hit config.recompile_limit").
    """
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
    setattr(config, name, max(getattr(config, name), limit))


def parallelize(
    model: nn.Module,
    block_lists: Sequence[nn.ModuleList],
    *,
    fsdp: bool,
    param_dtype: torch.dtype | None,
    activation_checkpointing: bool = False,
    compile_blocks: bool = False,
    compile_mode: str = "default",
) -> nn.Module:
    """Wrap every block of ``block_lists`` with activation checkpointing / compile, then shard blocks and root.

    Blocks compile with static shapes: a few token layouts recur all run long, and torch.compile's automatic
    dynamic shapes (the default after a second layout) give every kernel launch symbolic-size arithmetic on
    the host, which is what bounds a host-bound step. ``compile_mode="reduce-overhead"`` also captures each
    block's kernels as CUDA graphs (the loop then marks every step's start).
    """
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
    if compile_blocks:
        allow_block_recompiles()
    for blocks in block_lists:
        for i, block in enumerate(blocks):
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
    for blocks in block_lists:
        for block in blocks:
            fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def data_parallel_mesh():
    from torch.distributed.device_mesh import init_device_mesh

    device_type = "cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
    return init_device_mesh(device_type, (dist.get_world_size(),))
