"""The unified model's three training stages in one table: which parameter groups learn and at what rate, the
resolution, and the data ratio of each task (HYDRA-X's recipe).

The paper's ratio columns are text : image caption : image gen : video caption : video SFT : image SFT : edit.
Its "video caption" pairs are read both ways here, half as captioning (video_caption) and half as text-to-video
(video_gen), since the model is trained and evaluated on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Parameter-name prefixes of HydraX, by group. The Sem-ViT's group holds its input un-projection too (the
# bottleneck's from_latent), as tokenizer stage 3 does; the LLM's holds its (resized) embeddings.
PARAM_GROUPS: dict[str, tuple[str, ...]] = {
    "heads": ("projector.", "time_embed.", "flow_head."),
    "sem_vit": ("tokenizer.sem_vit.", "tokenizer.bottleneck.from_latent."),
    "llm": ("llm.",),
}


@dataclass(frozen=True)
class UnifiedStage:
    name: str
    lrs: dict[str, float]  # group -> peak learning rate; a group not listed is frozen
    resolution: int  # image side (pixels) the paper trains this stage at
    ratios: dict[str, float] = field(default_factory=dict)  # task -> weight in the data mixture

    @property
    def trains(self) -> tuple[str, ...]:
        return tuple(p for group in self.lrs for p in PARAM_GROUPS[group])

    def param_lrs(
        self, scale: float = 1.0, group_scales: dict[str, float] | None = None
    ) -> dict[str, tuple[tuple[str, ...], float]]:
        """For build_optimizer: group -> (prefixes, learning rate x ``scale`` x ``group_scales[group]``)."""
        group_scales = group_scales or {}
        for group, value in group_scales.items():
            if group not in PARAM_GROUPS:
                raise ValueError(f"group_lr_scale: unknown group {group!r}; groups are {sorted(PARAM_GROUPS)}")
            if group not in self.lrs:
                raise ValueError(
                    f"group_lr_scale: {group!r} is frozen in stage '{self.name}' (it trains {sorted(self.lrs)})"
                )
            if not value > 0:
                raise ValueError(f"group_lr_scale[{group!r}] must be positive, got {value}")
        return {g: (PARAM_GROUPS[g], lr * scale * group_scales.get(g, 1.0)) for g, lr in self.lrs.items()}


STAGES: dict[int, UnifiedStage] = {
    # Alignment: the LLM is frozen; the projector, time embedding, flow head and Sem-ViT learn.
    1: UnifiedStage("align", {"heads": 1e-4, "sem_vit": 5e-5}, 256, {"image_caption": 1.0, "image_gen": 3.0}),
    # Joint training: everything learns.
    2: UnifiedStage(
        "joint",
        {"heads": 5e-5, "sem_vit": 2e-5, "llm": 2e-5},
        512,
        {"image_caption": 2.0, "image_gen": 6.0, "video_caption": 0.5, "video_gen": 0.5, "video_sft": 1.0},
    ),
    # Instruction tuning, editing included.
    3: UnifiedStage(
        "instruct",
        {"heads": 5e-5, "sem_vit": 2e-5, "llm": 2e-5},
        1024,
        {"text": 1.0, "image_gen": 3.0, "video_caption": 1.5, "video_gen": 1.5, "image_sft": 1.0, "edit": 3.0},
    ),
}


def stage(number: int) -> UnifiedStage:
    if number not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {number}")
    return STAGES[number]
