"""A step's examples -> what the model's forward takes: packed token rows and the visual inputs with their draws.

Every random choice of a sample depends on (seed, micro-step, global example index) alone, so a step gives the
same losses on any number of processes: whether its caption is dropped (classifier-free guidance), its flow
time and its noise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from hydra_x.data.examples import Example
from hydra_x.data.mixture import StepExamples
from hydra_x.nn.flow import prior_noise, resolution_shift, shift_time
from hydra_x.train.seeding import sample_generator, sample_key
from hydra_x.unified.inputs import VisualInputs
from hydra_x.unified.packing import PackedBatch, pack
from hydra_x.unified.sequence import VisualSpec, build_sequence

DROPOUT_STREAM, TIME_STREAM, NOISE_STREAM = 11, 12, 13
PLACEHOLDER_TEXT = ("<image>", "<video>")


def latent_shape(config, pixels: torch.Tensor) -> tuple[int, int, int, int]:
    """(C, S, h, w) of the latent of pixels (3, H, W) or (3, F, H, W), without encoding them."""
    p = config.patch_size
    steps = config.latent_steps(pixels.shape[1]) if pixels.ndim == 4 else 1
    return config.latent_channels, steps, pixels.shape[-2] // p, pixels.shape[-1] // p


def visual_spec(config, pixels: torch.Tensor, role: str) -> VisualSpec:
    _, steps, h, w = latent_shape(config, pixels)
    return VisualSpec("video" if pixels.ndim == 4 else "image", steps, h * w, role)


def unit_draw(seed: int, micro_step: int, index: int, stream: int) -> float:
    """A uniform number in [0, 1) for one example, from its own key."""
    g = sample_generator(torch.device("cpu")).manual_seed(sample_key(seed, micro_step, index, stream))
    return float(torch.rand((), generator=g))


def drop_condition(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The unconditional version of a generation example: the user's words go, its visual placeholders stay."""
    out = []
    for m in messages:
        if m["role"] == "user":
            kept = [p for p in PLACEHOLDER_TEXT for _ in range(m["content"].count(p))]
            m = {**m, "content": "\n".join(kept)}
        out.append(m)
    return out


@dataclass(frozen=True)
class PackedStep:
    """A step's examples as packed rows, made where the step was built (a data worker): the text half of
    :func:`build_batch`, which the training process then need not spend its own time on."""

    packed: PackedBatch
    dropped: int  # captions dropped for classifier-free guidance
    micro_step: int
    first_index: int

    def pin_memory(self) -> PackedStep:
        return replace(self, packed=self.packed.pin_memory())


@dataclass(frozen=True)
class StepPacker:
    """Picklable: packs each step of a :class:`UnifiedDataLoader` in its workers (``prepare=``). The draws depend on
    (seed, micro-step, global example index) alone, so the rows are those the training process would pack."""

    text_tokenizer: Any
    tokenizer_config: Any  # the HydraX's tokenizer config: latent shapes
    cfg: Any  # the UnifiedTrainConfig: loss (caption dropout), seed, max_length
    rank: int

    def __call__(self, item: StepExamples) -> PackedStep:
        first = self.rank * len(item.examples)
        packed, dropped = pack_examples(
            self.text_tokenizer, self.tokenizer_config, item.examples, self.cfg, item.step, first
        )
        return PackedStep(packed, dropped, item.step, first)


def pack_examples(
    text_tokenizer, tcfg, examples: list[Example], cfg, micro_step: int, first_index: int
) -> tuple[PackedBatch, int]:
    """(packed rows, how many captions were dropped): chat templates, tokens and packing, on the host."""
    loss = cfg.loss
    seqs, dropped = [], 0
    for i, ex in enumerate(examples):
        messages = ex.messages
        generates = any(v.role == "generate" for v in ex.visuals)
        if (
            generates
            and loss.cond_dropout
            and unit_draw(cfg.seed, micro_step, first_index + i, DROPOUT_STREAM) < loss.cond_dropout
        ):
            messages, dropped = drop_condition(messages), dropped + 1
        specs = [visual_spec(tcfg, v.pixels, v.role) for v in ex.visuals]
        seqs.append(build_sequence(text_tokenizer, messages, specs))
    return pack(seqs, cfg.max_length, text_tokenizer.pad_token_id, cfg.row_multiple), dropped


def build_batch(
    model, examples: list[Example], cfg, micro_step: int, first_index: int, prepared: PackedStep | None = None
) -> tuple[PackedBatch, VisualInputs, int]:
    """(packed rows, visual inputs in placement order, how many captions were dropped). ``prepared``: the rows
    a :class:`StepPacker` already packed for these examples (in a data worker)."""
    mcfg, loss = model.config, cfg.loss
    tcfg = mcfg.tokenizer
    if prepared is None:
        packed, dropped = pack_examples(model.text_tokenizer, tcfg, examples, cfg, micro_step, first_index)
    elif (prepared.micro_step, prepared.first_index) != (micro_step, first_index):
        raise ValueError(
            f"rows packed for micro-step {prepared.micro_step}, first example {prepared.first_index}, given for "
            f"micro-step {micro_step}, first example {first_index}: the loader's steps and the trainer's disagree"
        )
    else:
        packed, dropped = prepared.packed, prepared.dropped
    pixels, times, noises = [], [], []
    device = model.device
    for p in packed.placements:
        x = examples[p.sample].visuals[p.block].pixels
        pixels.append(x)
        if p.role != "generate":
            continue
        index = first_index + p.sample
        key = (cfg.seed, micro_step, index, p.block)
        g = sample_generator(device).manual_seed(sample_key(*key, NOISE_STREAM))
        noises.append(prior_noise(latent_shape(tcfg, x), mcfg.noise_block_share, mcfg.noise_cells, g, device))
        n = torch.randn((), generator=sample_generator(torch.device("cpu")).manual_seed(sample_key(*key, TIME_STREAM)))
        t = torch.sigmoid(loss.time_mean + loss.time_std * n)
        if mcfg.time_shift_base_tokens:
            shift = resolution_shift(p.length, mcfg.time_shift_base_tokens, mcfg.max_time_shift)
            t = shift_time(t, shift)
        times.append(t)
    t_all = torch.stack(times).to(device) if times else None
    # Editing pairs (source, target) by placement index, for the Sem-ViT's Source-Target Interaction.
    where = {(p.sample, p.block): i for i, p in enumerate(packed.placements)}
    pairs = [(where[(i, 0)], where[(i, 1)]) for i, ex in enumerate(examples) if ex.task == "edit"]
    return packed, VisualInputs(pixels=pixels, t=t_all, noise=noises or None, pairs=pairs), dropped


def tokens_of(packed: PackedBatch) -> int:
    """Real (non-pad) positions of a packed batch."""
    return int(packed.valid.sum())
