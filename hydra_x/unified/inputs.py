"""What the unified model's forward takes besides the token rows (the visual blocks and their draws), and what
it returns (loss sums and counts)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class VisualInputs:
    """The visual blocks of a batch, in placement order: pixels (3, H, W) / (3, F, H, W) in [-1, 1], encoded by
    the forward pass (so that a sharded model encodes inside its own forward), or clean latents z (C, S, h, w);
    and for the generated blocks (role "generate", in the same order) their flow time and noise (z's shape). Any
    device: the forward moves them to the model's (training builds them there, so that is a no-op)."""

    pixels: list[torch.Tensor] | None = None
    z: list[torch.Tensor] | None = None
    t: torch.Tensor | None = None  # (G,) one time per generated block
    noise: list[torch.Tensor] | None = None  # G tensors shaped like their latents
    # Editing pairs (source block, target block), placement indices: with the config's edit_layout "sti" the
    # Sem-ViT runs each pair as one 2-step clip (Source-Target Interaction); "independent" runs them apart.
    pairs: list[tuple[int, int]] = field(default_factory=list)

    def latents(self, model) -> list[torch.Tensor]:
        """The clean latents, given (moved to ``model``'s device, as the batch is) or encoded by ``model``."""
        if self.z is not None:
            return [z.to(model.device, non_blocking=True) for z in self.z]
        if self.pixels is None:
            raise ValueError("VisualInputs needs pixels or z")
        return model.encode_each(self.pixels)


@dataclass
class UnifiedOutput:
    """Sums and counts, so that losses can be averaged over every rank's tokens (see the training objective)."""

    text_loss_sum: torch.Tensor  # cross-entropy summed over predicted text tokens
    text_tokens: int
    flow_loss_sum: torch.Tensor  # squared velocity error summed over generated latent elements
    flow_elements: int
    velocity: torch.Tensor | None = None  # (G_tokens, C) predictions, in placement order
