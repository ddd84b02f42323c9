"""The tokenizer's three training stages in one table: what trains, what runs, which loss terms are on.

Every stage-dependent decision of the training code reads this table (no ``stage ==`` checks elsewhere), so
changing a stage, or adding one, is an edit here. A loss term listed for a stage is on when its weight in
``LossConfig`` is above zero (and the teacher it needs is configured).
"""

from __future__ import annotations

from dataclasses import dataclass

RECONSTRUCTION = frozenset({"l1", "mse", "flow", "lpips", "gan"})
SEMANTIC = frozenset({"distill_image", "distill_video", "distill_layers", "consistency"})


@dataclass(frozen=True)
class Stage:
    name: str
    trains: tuple[str, ...]  # parameter-name prefixes of HydraXTokenizer that learn ("" is all); the rest is frozen
    decoder: bool  # the pixel decoder runs (reconstruction terms)
    semantic: bool  # the Sem-ViT, the Decompressor and the teacher heads run (teachers are loaded)
    losses: frozenset[str]
    needs_init: bool = False  # starts from a trained tokenizer (`init`)
    measures_latent_stats: bool = False  # stores per-channel latent statistics before its first step

    def uses(self, term: str) -> bool:
        return term in self.losses


STAGES: dict[int, Stage] = {
    # Foundation: the whole tokenizer, jointly with image and video distillation.
    1: Stage("foundation", ("",), decoder=True, semantic=True, losses=RECONSTRUCTION | SEMANTIC | {"kl"}),
    # Decoder refinement: the encoder is frozen and the decoder is tuned with the GAN added.
    2: Stage("decoder refinement", ("decoder.",), decoder=True, semantic=False, losses=RECONSTRUCTION),
    # Representation harmonisation: latent statistics are stored, then only the Sem-ViT side learns on
    # normalised latents (its input un-projection, the Decompressor and the heads with it); the decoder is
    # frozen and not even run.
    3: Stage(
        "representation harmonisation",
        ("sem_vit.", "bottleneck.from_latent.", "decompressor.", "image_head.", "video_head."),
        decoder=False,
        semantic=True,
        losses=SEMANTIC,
        needs_init=True,
        measures_latent_stats=True,
    ),
}


def stage(number: int) -> Stage:
    if number not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {number}")
    return STAGES[number]
