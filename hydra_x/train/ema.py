"""Exponential moving average of the trainable weights (sharded like the weights under FSDP2)."""

from __future__ import annotations

import torch
import torch.nn as nn

WRAPPER_PARTS = ("_checkpoint_wrapped_module.", "_orig_mod.")


def clean_name(name: str) -> str:
    """A parameter's name without activation-checkpointing / compile wrappers: its state-dict key."""
    for part in WRAPPER_PARTS:
        name = name.replace(part, "")
    return name


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {clean_name(n): p for n, p in model.named_parameters() if p.requires_grad}


class EMA:
    """Keeps ``decay``-averaged copies of the model's trainable parameters, in fp32.

    The copies are clones of the (possibly DTensor-sharded) parameters, so under FSDP2 each rank holds
    only its shard, and DCP saves and reshards them like the model.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        params = trainable_parameters(model)
        self.names = list(params)
        self.shadow = {n: params[n].detach().clone().float() for n in self.names}
        self._lists: tuple[int, list[torch.Tensor], list[nn.Parameter], bool] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        # The name lookups walk ~1k parameters: done once per model, not every step (host time of small models).
        if self._lists is None or self._lists[0] != id(model):
            params = trainable_parameters(model)
            weights = [params[n] for n in self.names]
            fp32 = all(p.dtype == torch.float32 for p in weights)
            self._lists = (id(model), [self.shadow[n] for n in self.names], weights, fp32)
        _, shadow, weights, fp32 = self._lists
        # fp32 weights are averaged as they are (no per-step list of ~1k casts); others are cast each step.
        torch._foreach_lerp_(shadow, weights if fp32 else [p.float() for p in weights], 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.names) - set(state))
        if missing:
            raise ValueError(f"EMA state lacks {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        with torch.no_grad():
            for n in self.names:
                self.shadow[n].copy_(state[n])
