"""Spatio-temporal attention over tokens laid out as (steps x tokens-per-step).

Inside a time step attention is always full. Across steps:

    full     every step sees every step
    causal   step t sees steps 0..t
    tubelet  step t sees steps t-1 and t (the paper's tubelet-causal mask)
    none     step t sees only itself (the Gen-ViT on an editing pair)

Three implementations compute the same function:

    masked   one SDPA call with a dense boolean mask: the reference, correct for every mode
    auto     mask-free where the mask allows: `none` as a batch of per-step SDPAs; `tubelet` as queries
             of step t >= 1 against the keys of steps [t-1, t] (one dense SDPA batched over steps) plus
             step 0 against itself. Both run on flash kernels. `causal` falls back to the mask.
    flex     FlexAttention with a block mask (compiled on CUDA).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

MODES = ("full", "causal", "tubelet", "none")


def step_mask(steps: int, tokens_per_step: int, mode: str, device: torch.device | str) -> torch.Tensor | None:
    """Boolean (L, L) mask, True where a query may attend to a key; None for `full`."""
    if mode == "full":
        return None
    step = torch.arange(steps, device=device).repeat_interleave(tokens_per_step)
    q, k = step[:, None], step[None, :]
    if mode == "causal":
        return k <= q
    if mode == "tubelet":
        return (k <= q) & (k >= q - 1)
    if mode == "none":
        return k == q
    raise ValueError(f"unknown attention mode {mode!r}; expected one of {MODES}")


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: str, steps: int) -> torch.Tensor:
    """Reference path. q, k, v: (B, H, L, D) with L = steps * tokens_per_step."""
    mask = step_mask(steps, q.shape[2] // steps, mode, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _split_steps(x: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, H, S*N, D) -> (B, S, H, N, D)."""
    b, h, length, d = x.shape
    return x.view(b, h, steps, length // steps, d).transpose(1, 2)


def per_step_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, steps: int) -> torch.Tensor:
    """Mode `none` without a mask: each step is its own batch element."""
    b, h, length, d = q.shape
    n = length // steps
    qs, ks, vs = (_split_steps(t, steps).reshape(b * steps, h, n, d) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qs, ks, vs)
    return out.view(b, steps, h, n, d).transpose(1, 2).reshape(b, h, length, d)


def tubelet_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, steps: int) -> torch.Tensor:
    """Mode `tubelet` without a mask: step 0 attends to itself; step t >= 1 to the keys of steps t-1 and t."""
    b, h, length, d = q.shape
    n = length // steps
    first = F.scaled_dot_product_attention(q[:, :, :n], k[:, :, :n], v[:, :, :n])
    if steps == 1:
        return first
    qs, ks, vs = (_split_steps(t, steps) for t in (q, k, v))  # (B, S, H, N, D)
    rest = steps - 1
    q_rest = qs[:, 1:].reshape(b * rest, h, n, d)
    # Keys of the previous step come first; within the pair the order does not change the softmax.
    k_pair = torch.cat((ks[:, :-1], ks[:, 1:]), dim=3).reshape(b * rest, h, 2 * n, d)
    v_pair = torch.cat((vs[:, :-1], vs[:, 1:]), dim=3).reshape(b * rest, h, 2 * n, d)
    out = F.scaled_dot_product_attention(q_rest, k_pair, v_pair)
    out = out.view(b, rest, h, n, d).transpose(1, 2).reshape(b, h, rest * n, d)
    return torch.cat((first, out), dim=2)


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@functools.lru_cache(maxsize=64)
def _flex_block_mask(steps: int, n: int, mode: str, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q_idx, kv_idx):
        qs, ks = q_idx // n, kv_idx // n
        if mode == "causal":
            return ks <= qs
        if mode == "tubelet":
            return (ks <= qs) & (ks >= qs - 1)
        return ks == qs

    return create_block_mask(mask_mod, None, None, steps * n, steps * n, device=device)


def flex_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: str, steps: int) -> torch.Tensor:
    from torch.nn.attention.flex_attention import flex_attention as eager_flex

    block_mask = _flex_block_mask(steps, q.shape[2] // steps, mode, str(q.device))
    fn = _compiled_flex() if q.is_cuda else eager_flex
    return fn(q, k, v, block_mask=block_mask)


def spatiotemporal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: str, steps: int, impl: str = "auto"
) -> torch.Tensor:
    """Attention of q, k, v (B, H, L, D), L = steps * tokens_per_step, under ``mode`` across steps."""
    if mode not in MODES:
        raise ValueError(f"unknown attention mode {mode!r}; expected one of {MODES}")
    if mode == "full" or steps == 1:
        # With one step every mode is full attention inside the step.
        return F.scaled_dot_product_attention(q, k, v)
    if impl == "masked":
        return masked_attention(q, k, v, mode, steps)
    if impl == "flex":
        return flex_attention(q, k, v, mode, steps)
    if impl != "auto":
        raise ValueError(f"unknown attention implementation {impl!r}; expected auto, masked or flex")
    if mode == "tubelet":
        return tubelet_attention(q, k, v, steps)
    if mode == "none":
        return per_step_attention(q, k, v, steps)
    return masked_attention(q, k, v, mode, steps)
