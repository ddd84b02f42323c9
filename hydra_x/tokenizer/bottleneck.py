"""The Generation-Semantic Bottleneck: Gen-ViT features -> diagonal Gaussian over C channels -> back."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class DiagonalGaussian:
    """A posterior N(mean, exp(logvar)); mean and logvar have the same shape, channels anywhere."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per element, averaged over all elements (fp32)."""
        mean, logvar = self.mean.float(), self.logvar.float()
        return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()


class GenerationSemanticBottleneck(nn.Module):
    """LayerNorm and a linear map to (mean, log-variance) of C channels; a linear un-projection back."""

    def __init__(self, width: int, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=eps)
        self.to_moments = nn.Linear(width, 2 * channels)
        self.from_latent = nn.Linear(channels, width)

    def posterior(self, h: torch.Tensor) -> DiagonalGaussian:
        """h (..., D) -> posterior over (..., C); log-variance clamped for a stable exp."""
        mean, logvar = self.to_moments(self.norm(h)).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def restore(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., C) -> (..., D), the Sem-ViT's input."""
        return self.from_latent(z)
