"""Inference with HydraX: text-to-image and text-to-video by flow matching, and chat about images and videos.

Generation: the prompt (up to its visual block's BEGIN token) runs through the LLM once and is kept as a KV
cache, the conditional and the unconditional (empty caption) prompts side by side in one left-padded batch;
each sampling step then runs only the block's visual tokens against the cache (``query_mask``) and crops the
cache back. Guidance mixes the two velocities; Euler or Heun on a (resolution-)shifted time grid; the tokenizer's
pixel decoder renders the latent. ``use_cache=False`` recomputes the prompt at every step (the reference path).

Chat (hydra_x.unified.chat) shares the prompt embedding and the decoder call.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import torch
from einops import rearrange

from hydra_x.errors import InputError
from hydra_x.nn.flow import guided, prior_noise, resolution_shift, sample, velocity_calls
from hydra_x.unified.heads import copy_velocity
from hydra_x.unified.masks import additive_mask, attention_mask, query_mask, query_position_ids
from hydra_x.unified.packing import PackedBatch, pad_to_batch
from hydra_x.unified.sequence import SampleSequence, VisualSpec, build_sequence, generation_sample


@contextlib.contextmanager
def sdpa_attention(model) -> Iterator[None]:
    """Inference runs the LLM with SDPA whatever it trains with: its masks are dense (KV-cached queries)."""
    llm = model.llm
    current = getattr(llm.config, "_attn_implementation", "sdpa")
    if current == "sdpa":
        yield
        return
    llm.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        llm.set_attn_implementation(current)


@cache
def _cache_arg(decoder_cls: type) -> str:
    """transformers 5.2x renamed the decoder's ``past_key_values`` argument to ``cache``."""
    return "cache" if "cache" in inspect.signature(decoder_cls.forward).parameters else "past_key_values"


def _decoder_call(model, embeds, mask, positions, kv=None):
    decoder = model.llm.get_decoder()
    extra = {_cache_arg(type(decoder)): kv, "use_cache": True} if kv is not None else {}
    return decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, **extra).last_hidden_state


# ---------------------------------------------------------------------------- checks


def visual_spec(model, kind: str, height: int, width: int, frames: int | None) -> tuple[VisualSpec, tuple[int, int]]:
    """The block layout of an image or video of ``height`` x ``width`` (and ``frames``): clear errors first."""
    cfg = model.config.tokenizer
    p = cfg.patch_size
    if height < p or width < p or height % p or width % p:
        raise InputError(f"height and width must be positive multiples of the patch size {p}; got {width}x{height}")
    steps = 1
    if kind == "video":
        if not model.config.video:
            raise InputError("this model is image-only (video=False): it cannot generate videos")
        factor = cfg.temporal_factor
        if frames is None or frames < 1 + factor or (frames - 1) % factor:
            raise InputError(f"a video has 1 + k * {factor} frames (k >= 1), e.g. {1 + 4 * factor}; got {frames}")
        steps = cfg.latent_steps(frames)
    grid = (height // p, width // p)
    return VisualSpec(kind, steps, grid[0] * grid[1], "generate"), grid


def check_context(model, length: int) -> None:
    limit = getattr(model.llm.config, "max_position_embeddings", None)
    if limit is not None and length > limit:
        raise InputError(
            f"the prompt and its visual tokens take {length} positions, more than the LLM's context of {limit}"
        )


# ---------------------------------------------------------------------------- generation


def prompt_embeds(model, batch: PackedBatch, latents, skip_block: bool = False) -> torch.Tensor:
    """Input embeddings of ``batch``: its tokens', with each visual block's from its clean latent
    (``latents[sample][block]``, (C, S, h, w)); ``skip_block``: blocks without a latent are left as tokens."""
    embeds = model.llm.get_input_embeddings()(batch.input_ids)
    for placement in batch.placements:
        given = latents[placement.sample]
        if placement.block >= len(given):
            if skip_block:
                continue
            raise ValueError(f"no latent for visual block {placement.block} of sample {placement.sample}")
        rows, cols = batch.visual_index([placement])
        z = given[placement.block]
        embeds = embeds.index_put((rows, cols), model.visual_embeddings(z[None])[0].to(embeds.dtype))
    return embeds


@dataclass
class BlockSampling:
    """How to sample: steps, guidance (1: no unconditional branch), Euler or Heun, time shift (None: the model's
    resolution shift), seed, KV cache, CUDA graph, a callback after each velocity evaluation, and the start time
    (below 1 with given latents: begin from them noised to that time, ``hydra_x.nn.flow.sample``)."""

    steps: int = 50
    guidance: float = 4.0
    sampler: str = "euler"
    shift: float | None = None
    seed: int = 0
    use_cache: bool = True
    cuda_graph: bool = False
    progress: Callable[[int], None] | None = None
    start: float = 1.0


@torch.no_grad()
def generate_latents(
    model,
    prompts: Sequence[str],
    kind: str = "image",
    *,
    height: int = 256,
    width: int = 256,
    frames: int | None = None,
    init: torch.Tensor | None = None,
    **options,
) -> torch.Tensor:
    """Normalised latents (B, C, S, h, w) for ``prompts``; ``options`` are BlockSampling's fields. With ``init``
    (normalised latents, e.g. ``model.encode`` of pictures) and ``start`` < 1 the sampler begins from them noised
    to ``start`` (``benchmarks/generation_from_noise.py``: from which noise level the model still draws a truth).

    ``cuda_graph`` (CUDA, with the cache): one sampling step (Sem-ViT, projector, LLM against the cached
    prompt, flow head) is captured once as a CUDA graph and replayed, which removes the per-kernel launch cost
    that bounds a plain loop of small steps."""
    how = BlockSampling(**options)
    spec, grid = visual_spec(model, kind, height, width, frames)
    captions = list(prompts) + ([""] * len(prompts) if how.guidance != 1.0 else [])
    rows = [generation_sample(model.text_tokenizer, spec, c) for c in captions]
    return sample_block(
        model, rows, 0, [[] for _ in rows], model.visual_embeddings, spec, grid, len(prompts), how, init
    )


@torch.no_grad()
def edit_latents(model, images: Sequence[torch.Tensor], instructions: Sequence[str], **options) -> torch.Tensor:
    """Latents (B, C, 1, h, w) of ``images`` (3, H, W) edited as ``instructions`` say. The source sits in the
    user's turn (clean, part of the cached prompt), the target is generated in the assistant's; with the model's
    edit_layout "sti" the Sem-ViT sees them as one 2-step clip. The unconditional branch drops the instruction
    and keeps the source. A ``start`` below 1 begins from the source noised to that time (SDEdit's strength)."""
    how = BlockSampling(**options)
    height, width = images[0].shape[-2:]
    if any(x.shape != images[0].shape or x.ndim != 3 for x in images):
        raise InputError("edit takes images (3, H, W) of one size")
    spec, grid = visual_spec(model, "image", height, width, None)
    sources = [model.encode(x[None])[0] for x in images]  # (C, 1, h, w) each
    texts = list(instructions) + ([""] * len(images) if how.guidance != 1.0 else [])
    sources = sources + (sources if how.guidance != 1.0 else [])
    rows = edit_rows(model, texts, spec)
    z_src = torch.stack(sources).to(model.device)  # (B', C, 1, h, w)
    if model.config.edit_layout == "sti":
        target = lambda zz, tt: model.pair_embeddings(z_src.to(zz.dtype), zz, tt)[1]  # noqa: E731
    else:
        target = model.visual_embeddings
    source = z_src if model.config.edit_reads_source else None
    init = z_src[: len(images)] if how.start < 1.0 else None  # SDEdit: begin from the source noised to `start`
    return sample_block(
        model, rows, 1, [[z] for z in sources], target, spec, grid, len(images), how, init, source=source
    )


def edit_rows(model, instructions: Sequence[str], spec: VisualSpec) -> list[SampleSequence]:
    """The sequences of editing: the source image and the instruction in the user's turn, the target image (of
    ``spec``, ``visual_spec``'s image block) in the assistant's (block 1); an empty instruction leaves the source
    alone (the unconditional branch)."""
    source_spec = VisualSpec.image(spec.tokens_per_step)
    return [
        build_sequence(
            model.text_tokenizer,
            [{"role": "user", "content": f"<image>\n{text}".rstrip()}, {"role": "assistant", "content": "<image>"}],
            [source_spec, spec],
        )
        for text in instructions
    ]


def sample_block(
    model,
    rows,
    block: int,
    prompt_latents,
    embed_target,
    spec: VisualSpec,
    grid,
    b: int,
    how: BlockSampling,
    init: torch.Tensor | None = None,
    source: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample the ``block``-th visual block of ``rows`` (the conditional rows, then the unconditional ones if
    guided), the blocks before it given by ``prompt_latents`` (per row, clean latents); ``embed_target(z_t, t)``
    gives the block's LLM embeddings; ``init`` (b, C, S, h, w): the latents a start time below 1 begins from;
    ``source`` (rows, C, S, h, w): an edit's source latents, for a flow head that reads them and for the copy
    velocity (the config's edit_source_input, edit_copy_prior). Returns latents
    (b, C, S, h, w)."""
    with sdpa_attention(model):
        return _sample_block(model, rows, block, prompt_latents, embed_target, spec, grid, b, how, init, source)


def _sample_block(model, rows, block, prompt_latents, embed_target, spec, grid, b, how, init, source) -> torch.Tensor:
    guide = how.guidance != 1.0
    llm_pass = (PromptCache if how.use_cache else PromptAgain)(model, rows, block, prompt_latents)
    cfg = model.config
    c = cfg.latent_channels
    generator = torch.Generator().manual_seed(how.seed)
    noise = prior_noise((b, c, spec.steps, *grid), cfg.noise_block_share, cfg.noise_cells, generator).to(model.device)

    def field(zz: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        """Velocity (B', C, S, h, w) of both halves (conditional, unconditional) at z_t ``zz``, times ``tt``."""
        hidden = llm_pass(embed_target(zz.to(model.tokenizer._dtype()), tt))  # (B', S N, D)
        tokens = rearrange(zz, "b c s h w -> b (s h w) c")
        grids = [(spec.steps, *grid)] * len(zz)
        src = None if source is None else rearrange(source.to(zz), "b c s h w -> (b s h w) c")
        times = tt.repeat_interleave(spec.length)
        head_src = src if cfg.edit_source_input else None
        v = model.flow_head(hidden.flatten(0, 1), tokens.flatten(0, 1), times, grids, head_src)
        if cfg.edit_copy_prior and src is not None:
            v = v + copy_velocity(tokens.flatten(0, 1), src, times, cfg.flow_prediction)
        return rearrange(v.view(*tokens.shape), "b (s h w) c -> b c s h w", s=spec.steps, h=grid[0])

    if how.cuda_graph and how.use_cache and model.device.type == "cuda":
        # The tokenizer's value checks read tensors back to the host, which a graph capture cannot do; the
        # latents here are the sampler's own.
        model.tokenizer.validate_inputs = False
        n = len(rows)
        zeros = torch.zeros((n, c, spec.steps, *grid), device=model.device)
        field = graphed(field, zeros, torch.zeros(n, device=model.device))
    calls = {"n": 0}

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        zz, tt = (torch.cat([x, x]), torch.cat([t, t])) if guide else (x, t)
        v = field(zz, tt)
        calls["n"] += 1
        if how.progress is not None:
            how.progress(calls["n"])
        return guided(v[:b], v[b:], how.guidance) if guide else v

    return sample(
        velocity, noise, how.steps, how.sampler, block_shift(model, spec, how.shift), init=init, start=how.start
    )


def block_shift(model, spec: VisualSpec, shift: float | None) -> float:
    """The time shift a block is sampled with: ``shift``, else the model's resolution shift for the block's
    tokens (1 where the model has none)."""
    cfg = model.config
    if shift is None and cfg.time_shift_base_tokens:
        shift = resolution_shift(spec.length, cfg.time_shift_base_tokens, cfg.max_time_shift)
    return shift or 1.0


def sampling_calls(
    model,
    kind: str,
    height: int,
    width: int,
    frames: int | None = None,
    *,
    steps: int = 50,
    sampler: str = "euler",
    shift: float | None = None,
    start: float = 1.0,
    **_: object,
) -> int:
    """The velocity evaluations that sampling one ``kind`` block of this size makes with these options (keyword
    arguments as ``BlockSampling``'s; others ignored): a progress bar's total."""
    spec, _ = visual_spec(model, kind, height, width, frames)
    return velocity_calls(steps, sampler, block_shift(model, spec, shift), start)


class PromptCache:
    """The LLM pass of one sampling step with the prompts KV-cached: the rows up to the sampled block's BEGIN
    (left-padded into one batch, earlier visual blocks embedded from their latents) run once; a call runs the
    block's visual tokens against the cache and crops it back."""

    def __init__(self, model, rows: list[SampleSequence], block: int, prompt_latents) -> None:
        from transformers import DynamicCache

        tok, cfg = model.text_tokenizer, model.config
        spec = rows[0].blocks[block].spec
        prompts = pad_to_batch([s.prefix(s.blocks[block].start) for s in rows], tok.pad_token_id)
        check_context(model, prompts.input_ids.shape[1] + spec.length)
        prompts = prompts.to(model.device)
        self.model, self.length, self.kv = model, spec.length, DynamicCache()
        embeds = prompt_embeds(model, prompts, prompt_latents)
        mask = additive_mask(attention_mask(prompts, cfg.video_attention), embeds.dtype)
        _decoder_call(model, embeds, mask, prompts.position_ids, self.kv)
        q_mask = query_mask(prompts.valid, spec.steps, spec.tokens_per_step, cfg.video_attention)
        self.mask = additive_mask(q_mask, embeds.dtype)
        self.positions = query_position_ids(prompts.valid, spec.length)

    def __call__(self, visual: torch.Tensor) -> torch.Tensor:
        hidden = _decoder_call(self.model, visual, self.mask, self.positions, self.kv)  # (B', S N, D)
        self.kv.crop(-self.length)  # drop the block again (negative: what every transformers accepts)
        return hidden


class PromptAgain:
    """The reference LLM pass: the whole sequence, prompt and visual block, at every step."""

    def __init__(self, model, rows: list[SampleSequence], block: int, prompt_latents) -> None:
        tok = model.text_tokenizer
        batch = pad_to_batch([s.prefix(s.blocks[block].end) for s in rows], tok.pad_token_id)
        check_context(model, batch.input_ids.shape[1])
        self.model, self.batch, self.latents = model, batch.to(model.device), prompt_latents
        self.length = rows[0].blocks[block].spec.length
        target = [p for p in self.batch.placements if p.block == block]
        self.rows, self.cols = self.batch.visual_index(target)

    def __call__(self, visual: torch.Tensor) -> torch.Tensor:
        model = self.model
        embeds = prompt_embeds(model, self.batch, self.latents, skip_block=True)
        embeds = embeds.index_put((self.rows, self.cols), visual.flatten(0, 1).to(embeds.dtype))
        return model.llm_hidden(self.batch, embeds)[self.rows, self.cols].view(visual.shape[0], self.length, -1)


def graphed(fn: Callable, *example: torch.Tensor) -> Callable:
    """``fn`` captured as a CUDA graph on static copies of ``example``: calling the result copies the inputs in,
    replays the graph and returns its (static) output. The capture runs ``fn`` twice first on a side stream
    (as PyTorch's own graphing does), so lazily built buffers exist before capture."""
    static = [e.clone() for e in example]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn(*static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(*static)

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        for s, x in zip(static, inputs):
            s.copy_(x)
        graph.replay()
        return out

    return run


@torch.no_grad()
def render(model, z: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Latents (B, C, S, h, w) -> float32 CPU pixels in [-1, 1]: (B, 3, H, W) for one step, else (B, 3, F, H, W)."""
    tok = model.tokenizer
    kwargs = {"generator": torch.Generator(model.device).manual_seed(seed)} if tok.config.decoder == "flow" else {}
    x = tok.decode(z.to(device=model.device, dtype=tok._dtype()), video=z.shape[2] > 1, **kwargs)
    return x.float().clamp(-1, 1).cpu()


def generate_image(model, prompt: str, *, height: int = 256, width: int = 256, **kwargs) -> torch.Tensor:
    """Text to image: (3, H, W) in [-1, 1]. Options as ``generate_latents`` (steps, guidance, sampler, shift, seed)."""
    z = generate_latents(model, [prompt], "image", height=height, width=width, **kwargs)
    return render(model, z, seed=kwargs.get("seed", 0))[0]


def generate_video(model, prompt: str, *, frames: int = 17, height: int = 256, width: int = 256, **kwargs):
    """Text to video: (3, F, H, W) in [-1, 1], F = 1 + 4k frames."""
    z = generate_latents(model, [prompt], "video", height=height, width=width, frames=frames, **kwargs)
    return render(model, z, seed=kwargs.get("seed", 0))[0]


def edit(model, image: torch.Tensor, instruction: str, **kwargs) -> torch.Tensor:
    """An image (3, H, W) in [-1, 1] edited as ``instruction`` says: (3, H, W) in [-1, 1]. Options as
    ``edit_latents`` (steps, guidance, sampler, shift, seed)."""
    if image.ndim != 3:
        raise InputError(f"edit takes an image (3, H, W); got {tuple(image.shape)}")
    z = edit_latents(model, [image], [instruction], **kwargs)
    return render(model, z, seed=kwargs.get("seed", 0))[0]
