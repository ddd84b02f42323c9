"""Attention masks of the unified model, from the per-position ids of a PackedBatch.

Key j is visible to query i when both are in the same sample and either j <= i (text is causal) or both are in
the same visual block and the block's rule allows it. Inside an image block attention is full. Inside a video
block the rule is a switch: ``bidirectional`` (all latent steps are denoised jointly at one flow time, so each
sees all) or ``causal`` (step t sees steps <= t, and all of its own step). An image has a single step, so the
causal step rule is full attention for it and one rule covers both kinds.

Pads see only themselves: a query row with no visible key is NaN on some attention kernels and torch versions
(and uniform over everything with an additive mask), which would then spread through the backward pass.

One rule function serves the dense mask and the FlexAttention mask_mod, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn.attention.flex_attention import create_block_mask
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from hydra_x.unified.packing import PackedBatch

VideoAttention = Literal["bidirectional", "causal"]


def _step_causal(video_attention: VideoAttention) -> bool:
    if video_attention not in ("bidirectional", "causal"):
        raise ValueError(f"video_attention must be 'bidirectional' or 'causal', not {video_attention!r}")
    return video_attention == "causal"


def _rule(
    q_idx: torch.Tensor,
    kv_idx: torch.Tensor,
    sample_q: torch.Tensor,
    sample_k: torch.Tensor,
    block_q: torch.Tensor,
    block_k: torch.Tensor,
    step_q: torch.Tensor,
    step_k: torch.Tensor,
    step_causal: bool,
) -> torch.Tensor:
    """The mask rule on broadcastable ids (dense) or scalars (FlexAttention's vmap)."""
    same_sample = (sample_q == sample_k) & (sample_q >= 0)
    same_block = (block_q == block_k) & (block_q >= 0)
    if step_causal:
        same_block = same_block & (step_k <= step_q)
    return (same_sample & ((kv_idx <= q_idx) | same_block)) | (q_idx == kv_idx)


def _dense_rule(sample: torch.Tensor, block: torch.Tensor, step: torch.Tensor, step_causal: bool) -> torch.Tensor:
    """The rule over every (query, key) pair of rows of ids (..., L) -> (..., L, L) bool."""
    idx = torch.arange(sample.shape[-1], device=sample.device)
    pair = lambda ids: (ids[..., :, None], ids[..., None, :])  # noqa: E731  (query's, key's)
    return _rule(idx[:, None], idx[None, :], *pair(sample), *pair(block), *pair(step), step_causal)


def attention_mask(batch: PackedBatch, video_attention: VideoAttention = "bidirectional") -> torch.Tensor:
    """(B, 1, L, L) bool, True where query i may attend to key j."""
    return _dense_rule(batch.sample, batch.block, batch.step, _step_causal(video_attention))[:, None]


def visible_pairs(batch: PackedBatch, video_attention: VideoAttention = "bidirectional") -> tuple[int, int]:
    """(visible, all) (query, key) pairs of the batch's rows under :func:`attention_mask`'s rule, one row at a time
    (a whole batch's dense mask would be rows x L x L). Their share of the dense attention is the model's work,
    what MFU counts: SDPA computes every pair of a row, FlexAttention skips the blocks of 128 x 128 that hide all."""
    step_causal = _step_causal(video_attention)
    rows, length = batch.sample.shape
    visible = sum(
        int(_dense_rule(batch.sample[r], batch.block[r], batch.step[r], step_causal).sum()) for r in range(rows)
    )
    return visible, rows * length * length


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool mask -> 0 where visible, finfo(dtype).min elsewhere. Eager attention adds the mask to the scores, so a
    bool mask there silently becomes +1 / +0 instead of blocking anything."""
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return out.masked_fill_(~mask, torch.finfo(dtype).min)


def flex_mask_mod(batch: PackedBatch, video_attention: VideoAttention = "bidirectional"):
    """A FlexAttention ``mask_mod(b, h, q_idx, kv_idx)`` closing over the batch's id tensors."""
    step_causal = _step_causal(video_attention)
    sample, block, step = batch.sample, batch.block, batch.step

    def mask_mod(b, h, q_idx, kv_idx):
        return _rule(
            q_idx,
            kv_idx,
            sample[b, q_idx],
            sample[b, kv_idx],
            block[b, q_idx],
            block[b, kv_idx],
            step[b, q_idx],
            step[b, kv_idx],
            step_causal,
        )

    return mask_mod


_compiled_create_block_mask = None


def _create_block_mask(compiled: bool):
    """``create_block_mask``, or the one compiled copy of it (compiled on first use, kept for the process). Eager,
    it evaluates the rule on the whole rows x L x L grid and then reduces it to blocks, dozens of operators whose
    launches cost a 512-example GPU step 16 to 33 ms of host time; compiled (PyTorch's advice for a mask rebuilt
    every step), one fused graph that never materialises the grid. It compiles twice, for the first two row
    counts (the second makes the row count dynamic), and then serves every step. Under a TorchDispatchMode (the
    engine's FLOP-counted step), code compiled there would run eagerly for good: eager instead."""
    global _compiled_create_block_mask
    if not compiled or _get_current_dispatch_mode_stack():
        return create_block_mask
    if _compiled_create_block_mask is None:
        _compiled_create_block_mask = torch.compile(create_block_mask)
    return _compiled_create_block_mask


def flex_block_mask(
    batch: PackedBatch, video_attention: VideoAttention = "bidirectional", *, compiled: bool = False, **kwargs
):
    """The FlexAttention BlockMask of :func:`attention_mask` (on the batch's device; one mask for all heads), built
    by a compiled ``create_block_mask`` where ``compiled`` (the model's GPU forward). Extra keyword arguments go to
    ``create_block_mask`` (e.g. ``BLOCK_SIZE``)."""
    b, length = batch.sample.shape
    return _create_block_mask(compiled)(
        flex_mask_mod(batch, video_attention), b, None, length, length, device=batch.sample.device, **kwargs
    )


def query_mask(
    prefix_valid: torch.Tensor,
    steps: int,
    tokens_per_step: int,
    video_attention: VideoAttention = "bidirectional",
) -> torch.Tensor:
    """(B, 1, Lq, Lp + Lq) bool for denoising one visual block against a KV cache of its prefix.

    ``prefix_valid`` (B, Lp) marks the cached keys that are real tokens (``batch.valid`` of a :func:`pad_to_batch`
    prompt ending with the block's BEGIN); pads of the prefix are hidden. The query is the block's
    ``steps * tokens_per_step`` positions, laid after the prefix, seeing each other by the block's rule.
    """
    step_causal = _step_causal(video_attention)
    b, lp = prefix_valid.shape
    lq = steps * tokens_per_step
    device = prefix_valid.device
    q_idx = torch.arange(lp, lp + lq, device=device)  # (Lq,)
    kv_idx = torch.arange(lp + lq, device=device)  # (Lp + Lq,)
    zeros = torch.zeros(lq, dtype=torch.long, device=device)
    sample_k = torch.cat([torch.where(prefix_valid, 0, -1), zeros.expand(b, lq)], 1)  # (B, Lp + Lq)
    block_k = torch.cat([torch.full((lp,), -1, dtype=torch.long, device=device), zeros])  # (Lp + Lq,)
    step_q = torch.arange(steps, device=device).repeat_interleave(tokens_per_step)  # (Lq,)
    step_k = torch.cat([torch.full((lp,), -1, dtype=torch.long, device=device), step_q])  # (Lp + Lq,)
    mask = _rule(
        q_idx[:, None],
        kv_idx[None, :],
        zeros[:, None],
        sample_k[:, None, :],
        zeros[:, None],
        block_k[None, :],
        step_q[:, None],
        step_k[None, :],
        step_causal,
    )  # (B, Lq, Lp + Lq)
    return mask[:, None]


def query_position_ids(prefix_valid: torch.Tensor, length: int) -> torch.Tensor:
    """(B, length) position ids continuing each row's prefix (its count of real tokens)."""
    start = prefix_valid.sum(-1, keepdim=True)  # (B, 1)
    return start + torch.arange(length, device=prefix_valid.device)
