"""Small builders shared by the tests."""

import torch

from hydra_x import HydraXTokenizer


def tiny(**overrides) -> HydraXTokenizer:
    """A tiny tokenizer in eval mode (posterior mean), fp32, fixed seed."""
    return HydraXTokenizer.from_preset("tiny", seed=0, **overrides).eval()


def pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    """Uniform pixels in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1
