"""Model FLOP utilisation: the GPU's bf16 matmul ceiling (the denominator), the attention a mask hides taken out of
the count (the numerator), and what counting FLOPs costs compile."""

from __future__ import annotations

import torch


def measure_peak_tflops(device: torch.device) -> float | None:
    """The bf16 matmul ceiling of this GPU, the MFU denominator (None off CUDA).

    Median of 7 timings of 20 back-to-back 8192^3 products, after 50 for warm-up: the GPU runs loaded, at the
    clocks it holds in training (single synchronised products read up to ~4% apart between runs).
    """
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(50):
        a @ b
    times = []
    for _ in range(7):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(20):
            a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / 20)
    return 2 * 8192**3 / sorted(times)[3] / 1e12


def is_attention_op(op) -> bool:
    """SDPA's kernels and FlexAttention, forward and backward, as FlopCounterMode names them."""
    return "attention" in str(op)


def useful_flops(counts: dict, visible_share: float | None) -> float:
    """A step's FLOPs (``counts``: op -> FLOPs, FlopCounterMode's "Global" entry) with its attention counted at the
    ``visible_share`` of (query, key) pairs its mask lets through. FlopCounterMode counts every attention call as
    dense over its whole length; a packed row of examples that see only themselves does a fraction of that work.
    The share applies to every attention operator of the step: in the unified model the LLM's rows are nearly all
    of it (a picture's Sem-ViT attends over 64 tokens, a row over 2048). ``visible_share`` None: the count as is."""
    total = float(sum(counts.values()))
    if visible_share is None:
        return total
    if not 0.0 <= visible_share <= 1.0:
        raise ValueError(f"visible_share must be in [0, 1], got {visible_share}")
    attention = sum(flops for op, flops in counts.items() if is_attention_op(op))
    return total - (1.0 - visible_share) * attention


def forget_compiled_code() -> None:
    """Let compiled blocks compile again after a step run under FlopCounterMode.

    Code that torch.compile first meets under a TorchDispatchMode (FlopCounterMode is one) is marked to run
    eagerly for good (seen in torch 2.11-2.13): without this reset, compile=true silently trained in eager
    mode after the step that counts the FLOPs for MFU.
    """
    torch.compiler.reset()
