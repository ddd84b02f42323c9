"""AdamW with decoupled decay on matrices only, linear warm-up and cosine decay."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.05
    warmup_steps: int = 1000
    decay: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping


def param_groups(
    model: nn.Module, weight_decay: float, lrs: dict[str, tuple[tuple[str, ...], float]] | None = None
) -> list[dict]:
    """Decay weight matrices only; biases, norms, embeddings and RoPE scales (all < 2D or named) are not decayed.

    ``lrs`` (name -> (parameter-name prefixes, learning rate)) gives named groups their own learning rate: each
    trainable parameter joins the first group whose prefix its name starts with (a trainable parameter in no
    group is an error: it would silently train at another rate). Without it, every group uses the config's lr.
    """
    from hydra_x.train.ema import clean_name

    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = clean_name(name)
        group = ""
        if lrs is not None:
            group = next((g for g, (prefixes, _) in lrs.items() if name.startswith(prefixes)), None)
            if group is None:
                raise ValueError(f"trainable parameter {name} is in no learning-rate group of {sorted(lrs)}")
        decay = not (param.ndim < 2 or name.endswith("pos_embed") or "rope_scale" in name)
        buckets.setdefault((group, decay), []).append(param)
    groups = []
    for (group, decay), params in buckets.items():
        entry = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        if group:
            entry.update(lr=lrs[group][1], name=group)
        groups.append(entry)
    return groups


def build_optimizer(
    model: nn.Module, config: OptimConfig, lrs: dict[str, tuple[tuple[str, ...], float]] | None = None
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; ``lrs``: named groups with their own learning rates (see param_groups)."""
    groups = [g for g in param_groups(model, config.weight_decay, lrs) if g["params"]]
    if not groups:
        raise ValueError("no trainable parameters: every parameter of the model is frozen")
    fused = all(p.is_cuda for g in groups for p in g["params"])
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused or None)
    init_optimizer_state(optimizer)
    return optimizer


@torch.no_grad()
def init_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Create the state of every parameter now (a zero-gradient step at lr 0, which changes no weight).

    Parts that only video batches reach (the Decompressor) would otherwise have no state until their
    first video batch, and a checkpoint taken before it could not be loaded into a fresh optimizer.
    """
    lrs = [g["lr"] for g in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = 0.0
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr


def lr_factor(step: int, config: OptimConfig, total_steps: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.decay == "constant":
        return 1.0
    span = max(total_steps - config.warmup_steps, 1)
    progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int | Callable[[], int]):
    """LambdaLR over ``lr_factor``; ``total_steps`` may be a callable, read at every step (a run whose
    length is set by a time budget learns its length after it starts)."""
    if config.decay not in ("cosine", "constant"):
        raise ValueError(f"optim.decay must be 'cosine' or 'constant', got {config.decay!r}")
    total = total_steps if callable(total_steps) else (lambda: total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config, total()))
