"""FlexAttention for the LLM's training forward, registered with transformers as ``hydra_flex``.

The unified model's mask (causal text, bidirectional visual blocks, packed samples apart) is a BlockMask built by
``hydra_x.unified.masks.flex_block_mask``; transformers passes a 4D mask through to the attention function
untouched. transformers' own ``flex_attention`` implementation decides itself whether to compile FlexAttention
and, with torch 2.11 and transformers 5.17 on CUDA, ran it uncompiled under autocast, which fails
("no implementation found for 'torch.ops.higher_order.flex_attention'"). This function always calls a compiled
FlexAttention on CUDA, the fused kernel that is the point of using it, and calls it with autocast off (a compiled
call failed under autocast too); on the CPU it runs eagerly (the forward only: PyTorch has no CPU backward for
it), which the tests compare with the dense mask, under autocast as in training.
"""

from __future__ import annotations

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention
from transformers import AttentionInterface

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
    run = _compiled_flex() if query.is_cuda else flex_attention
    # Autocast off around the call: q, k and v already come in the compute dtype, and the FlexAttention operator
    # has no autocast rule (torch 2.11 on CUDA: "no implementation found for 'torch.ops.higher_order.flex_attention'"
    # under autocast, with transformers' implementation and with a compiled call alike).
    with torch.autocast(query.device.type, enabled=False):
        out = run(
            query,
            key.to(query.dtype),
            value.to(query.dtype),
            block_mask=attention_mask,
            scale=scaling,
            enable_gqa=query.shape[1] != key.shape[1],
        )
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, hydra_flex_attention)
