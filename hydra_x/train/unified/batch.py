"""A step's examples -> what the model's forward takes: packed token rows and the visual inputs with their draws.

Every random choice of a sample depends on (seed, micro-step, global example index) alone, so a step gives the
same losses on any number of processes: whether its caption is dropped (classifier-free guidance), its flow
time and its noise. All are drawn on the host's generators, where the step is built (a data worker), so they do
not depend on the device either.
"""

from __future__ import annotations

import math
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
class GeneratedDraws:
    """The flow times and noises of a step's generated blocks, in placement order. The noises travel as one flat
    tensor, which the training process moves to the device in one copy: drawn on the device block by block, they
    cost a host-bound step several operators per example."""

    t: torch.Tensor  # (G,) float32
    noise: torch.Tensor  # (sum of the blocks' sizes,) float32
    shapes: tuple[tuple[int, ...], ...]  # each block's latent shape (C, S, h, w)

    def pin_memory(self) -> GeneratedDraws:
        return replace(self, t=self.t.pin_memory(), noise=self.noise.pin_memory())

    def to(self, device: torch.device) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
        """(times (G,), one noise per block) on ``device``, or (None, None) without generated blocks."""
        if not self.shapes:
            return None, None
        flat = self.noise.to(device, non_blocking=True)
        blocks = flat.split([math.prod(shape) for shape in self.shapes])
        return self.t.to(device, non_blocking=True), [x.view(shape) for x, shape in zip(blocks, self.shapes)]


def draw_generated(
    config, cfg, examples: list[Example], placements, micro_step: int, first_index: int
) -> GeneratedDraws:
    """The flow time and noise of each generated block of ``placements``, on the host, each from its own key
    (seed, micro-step, global example index, block); ``config``: the HydraX's UnifiedConfig (latent shapes, noise
    and time shift), ``cfg``: the UnifiedTrainConfig (seed, time distribution)."""
    cpu, loss = torch.device("cpu"), cfg.loss
    times, noises, shapes = [], [], []
    for p in placements:
        if p.role != "generate":
            continue
        shape = latent_shape(config.tokenizer, examples[p.sample].visuals[p.block].pixels)
        key = (cfg.seed, micro_step, first_index + p.sample, p.block)
        g = sample_generator(cpu).manual_seed(sample_key(*key, NOISE_STREAM))
        noises.append(prior_noise(shape, config.noise_block_share, config.noise_cells, g, cpu).flatten())
        shapes.append(shape)
        n = torch.randn((), generator=sample_generator(cpu).manual_seed(sample_key(*key, TIME_STREAM)))
        t = torch.sigmoid(loss.time_mean + loss.time_std * n)
        if config.time_shift_base_tokens:
            t = shift_time(t, resolution_shift(p.length, config.time_shift_base_tokens, config.max_time_shift))
        times.append(t)
    if not shapes:
        return GeneratedDraws(torch.zeros(0), torch.zeros(0), ())
    return GeneratedDraws(torch.stack(times), torch.cat(noises), tuple(shapes))


@dataclass(frozen=True)
class PackedStep:
    """A step's examples as packed rows and the draws of its generated blocks, made where the step was built (a
    data worker): the host's half of :func:`build_batch`, which the training process then need not spend its own
    time on."""

    packed: PackedBatch
    dropped: int  # captions dropped for classifier-free guidance
    micro_step: int
    first_index: int
    draws: GeneratedDraws

    def pin_memory(self) -> PackedStep:
        return replace(self, packed=self.packed.pin_memory(), draws=self.draws.pin_memory())


@dataclass(frozen=True)
class StepPacker:
    """Picklable: packs each step of a :class:`UnifiedDataLoader` and draws its flow times and noises in the
    loader's workers (``prepare=``). The draws depend on (seed, micro-step, global example index) alone, so the
    rows and draws are those the training process would make."""

    text_tokenizer: Any
    model_config: Any  # the HydraX's UnifiedConfig: latent shapes, noise and time shift
    cfg: Any  # the UnifiedTrainConfig: loss (caption dropout, time distribution), seed, max_length
    rank: int

    def __call__(self, item: StepExamples) -> PackedStep:
        first = self.rank * len(item.examples)
        examples, config = item.examples, self.model_config
        packed, dropped = pack_examples(self.text_tokenizer, config.tokenizer, examples, self.cfg, item.step, first)
        draws = draw_generated(config, self.cfg, examples, packed.placements, item.step, first)
        return PackedStep(packed, dropped, item.step, first, draws)


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
    and draws a :class:`StepPacker` already made for these examples (in a data worker)."""
    if prepared is None:
        packed, dropped = pack_examples(
            model.text_tokenizer, model.config.tokenizer, examples, cfg, micro_step, first_index
        )
        draws = draw_generated(model.config, cfg, examples, packed.placements, micro_step, first_index)
    elif (prepared.micro_step, prepared.first_index) != (micro_step, first_index):
        raise ValueError(
            f"rows packed for micro-step {prepared.micro_step}, first example {prepared.first_index}, given for "
            f"micro-step {micro_step}, first example {first_index}: the loader's steps and the trainer's disagree"
        )
    else:
        packed, dropped, draws = prepared.packed, prepared.dropped, prepared.draws
    pixels = [examples[p.sample].visuals[p.block].pixels for p in packed.placements]
    t, noises = draws.to(model.device)
    # Editing pairs (source, target) by placement index, for the Sem-ViT's Source-Target Interaction.
    where = {(p.sample, p.block): i for i, p in enumerate(packed.placements)}
    pairs = [(where[(i, 0)], where[(i, 1)]) for i, ex in enumerate(examples) if ex.task == "edit"]
    return packed, VisualInputs(pixels=pixels, t=t, noise=noises, pairs=pairs), dropped


def tokens_of(packed: PackedBatch) -> int:
    """Real (non-pad) positions of a packed batch."""
    return int(packed.valid.sum())
