"""FlexAttention for the LLM's training forward, registered with transformers as ``hydra_flex``.

The unified model's mask (causal text, bidirectional visual blocks, packed samples apart) is a BlockMask built by
``hydra_x.unified.masks.flex_block_mask``; transformers passes a 4D mask through to the attention function
untouched. transformers' own ``flex_attention`` implementation decides itself whether to compile FlexAttention
and, with torch 2.11 and transformers 5.17 on CUDA, ran it uncompiled under autocast, which fails
("no implementation found for 'torch.ops.higher_order.flex_attention'"). This function always calls a compiled
FlexAttention on CUDA, the fused kernel that is the point of using it; on the CPU it runs eagerly (the forward
only: PyTorch has no CPU backward for it), which the tests compare with the dense mask.

Under a TorchDispatchMode, FlexAttention fails, eager or compiled (torch 2.11 to 2.13: "no implementation found
for 'torch.ops.higher_order.flex_attention'"; compiled code first met under such a mode runs eagerly). The
engine counts the FLOPs of the first training step on CUDA under FlopCounterMode, one such mode, so that step
(and anything else run under a mode) takes SDPA with the same rule as a dense mask: the same attention, counted
as dense attention, as the SDPA path counts it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, create_mask, flex_attention
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack
from transformers import AttentionInterface

from hydra_x.unified.masks import additive_mask

NAME = "hydra_flex"
_compiled = None


def _compiled_flex():
    global _compiled
    if _compiled is None:  # compiled once, on first use: importing the module stays cheap
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def hydra_flex_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: BlockMask | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: q (B, H, Lq, Dh), k / v (B, Hkv, Lk, Dh) -> (B, Lq, H, Dh)."""
    if not isinstance(attention_mask, BlockMask):
        raise TypeError(f"{NAME} attention needs the unified model's BlockMask, got {type(attention_mask).__name__}")
    if dropout:
        raise ValueError(f"{NAME} attention has no dropout (got {dropout})")
    gqa = query.shape[1] != key.shape[1]
    if not torch.compiler.is_compiling() and _get_current_dispatch_mode_stack():
        out = _dense_attention(query, key, value, attention_mask, scaling, gqa)
    else:
        run = _compiled_flex() if query.is_cuda else flex_attention
        out = run(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


def _dense_attention(query, key, value, block_mask: BlockMask, scaling: float | None, gqa: bool) -> torch.Tensor:
    """The same attention through SDPA with the BlockMask's rule as a dense additive mask (B, 1, Lq, Lk), as the
    "sdpa" path runs it. Keys and values are repeated to every query head: with ``enable_gqa`` and a mask, SDPA (torch
    2.11) has no memory-efficient kernel and takes the math one, which keeps every layer's (B, H, Lq, Lk) weights in
    float32 for the backward: 75 GiB in the first (FLOP-counted) step of a 128-example `small` run."""
    mask = create_mask(block_mask.mask_mod, query.shape[0], None, query.shape[2], key.shape[2], device=query.device)
    if gqa:
        repeats = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(repeats, dim=1), value.repeat_interleave(repeats, dim=1)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=additive_mask(mask, query.dtype), scale=scaling)


AttentionInterface.register(NAME, hydra_flex_attention)
