"""HydraX: one LLM over interleaved text and visual tokens that understands and generates images and videos.

    understanding:  pixels --Gen-ViT, GSB--> z --Sem-ViT--> s --projector--> LLM --> next-token logits
    generation:     z_t = (1 - t) z + t eps --Sem-ViT--> s --projector (+ time)--> LLM --flow head--> velocity

The LLM sees only Sem-ViT tokens, clean for understanding and noisy for generation; the flow head predicts
the velocity eps - z of each 64-channel latent token (normalised latents, as the tokenizer's stage 3 stores
them), and the tokenizer's pixel decoder renders sampled latents. A batch is a PackedBatch (hydra_x.unified
.sequence) with one latent per visual block, in placement order; attention follows hydra_x.unified.masks.

Inference (``chat``, ``generate_image``, ``generate_video``) is in hydra_x.unified.sampling.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.hub import looks_like_path
from hydra_x.tokenizer.model import HydraXTokenizer
from hydra_x.unified.config import UnifiedConfig, unified_config
from hydra_x.unified.flex import NAME as FLEX
from hydra_x.unified.heads import FlowHead, Projector, copy_velocity
from hydra_x.unified.inputs import UnifiedOutput, VisualInputs
from hydra_x.unified.masks import additive_mask, attention_mask, flex_block_mask
from hydra_x.unified.packing import PackedBatch, to_device_async, token_runs
from hydra_x.unified.sequence import VisualTokenIds
from hydra_x.unified.text_tokenizer import use_chat_template

MODEL_TYPE = "hydra-x"
HEADS_FILE = "heads.safetensors"
HEAD_PREFIXES = ("projector.", "time_embed.", "flow_head.")


@dataclass
class NoisedBlocks:
    """The generated blocks at their flow times: each block's z_t = (1 - t) z0 + t noise, and as rows in generation
    order (step-major, as the flow head reads them) its tokens' z_t (N, C), flow target noise - z0 (N, C) and
    time (N,)."""

    latents: dict[int, torch.Tensor]
    z_t: torch.Tensor
    target: torch.Tensor
    t: torch.Tensor


def noised(
    z0: list[torch.Tensor], gen: list[int], noise: list[torch.Tensor], times: dict, device: torch.device
) -> NoisedBlocks:
    """The generated blocks (``gen``: their indices in ``z0``; ``noise`` in the same order; ``times``: block -> t)
    noised, computed once per latent shape and put in generation order by one gather: a host-bound step pays for
    every operator, and one per block grew with the examples."""
    groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for k, i in enumerate(gen):
        groups.setdefault(tuple(z0[i].shape), []).append((k, i))
    latents: dict[int, torch.Tensor] = {}
    z_ts, targets, ts = [], [], []  # per shape: (blocks, their rows (n, S h w, ...))
    rows = lambda x: x.flatten(2).transpose(1, 2)  # noqa: E731  (n, C, S, h, w) -> (n, S h w, C), step-major
    for members in groups.values():
        blocks = [i for _, i in members]
        z = torch.stack([z0[i] for i in blocks])  # (n, C, S, h, w)
        eps = torch.stack([noise[k] for k, _ in members])
        t = torch.stack([times[i] for i in blocks])
        tz = t.to(z).view(-1, *[1] * (z.ndim - 1))
        z_t = (1 - tz) * z + tz * eps.to(z)
        latents.update(zip(blocks, z_t.unbind()))
        z_ts.append((blocks, rows(z_t)))
        targets.append((blocks, rows(eps) - rows(z)))
        ts.append((blocks, t[:, None].expand(-1, z[0, 0].numel())))
    return NoisedBlocks(latents, *(in_order(parts, gen, device) for parts in (z_ts, targets, ts)))


def in_order(parts: list[tuple[list[int], torch.Tensor]], blocks: list[int], device: torch.device) -> torch.Tensor:
    """Rows of calls made per group of blocks (each part: its blocks, and a tensor (n, T, ...) of their rows) as one
    tensor (sum T, ...) in the order of ``blocks``, by one gather (none where the order is already so): indexing
    each block out of its call would cost an operator per block, and in a backward one that writes a zero tensor of
    the call's whole size."""
    if [i for members, _ in parts for i in members] == list(blocks):
        return torch.cat([x.flatten(0, 1) for _, x in parts])
    run: dict[int, tuple[int, int]] = {}  # block -> (its first row in the parts' concatenated rows, its rows)
    offset = 0
    for members, x in parts:
        n, rows = x.shape[:2]
        run.update({i: (offset + j * rows, rows) for j, i in enumerate(members)})
        offset += n * rows
    order = to_device_async(token_runs(*zip(*(run[i] for i in blocks))), device)
    return torch.cat([x.flatten(0, 1) for _, x in parts])[order]


def rows_of_one_stack(pictures: list[torch.Tensor]) -> list[int] | None:
    """Each picture's row in the contiguous stack they are all whole rows of (views such as ``stack.unbind()``
    gives), or None if they are not."""
    base = pictures[0]._base
    if base is None or not base.is_contiguous() or base.shape[1:] != pictures[0].shape:
        return None
    size, rows = pictures[0].numel(), []
    for x in pictures:
        offset = x.storage_offset() - base.storage_offset()
        if x._base is not base or not x.is_contiguous() or offset % size:
            return None
        rows.append(offset // size)
    return rows


class HydraX(nn.Module):
    def __init__(self, config: UnifiedConfig, tokenizer: HydraXTokenizer, llm: nn.Module, text_tokenizer) -> None:
        super().__init__()
        if tokenizer.config != config.tokenizer:
            raise ValueError("the tokenizer's config differs from config.tokenizer")
        self.config = config
        self.tokenizer = tokenizer
        self.llm = llm
        # the model owns its text tokenizer: every sequence, in training and inference, is written in this format
        self.text_tokenizer = use_chat_template(text_tokenizer, config.chat_template)
        self.visual_ids = VisualTokenIds.from_tokenizer(text_tokenizer)
        # Whether the training forward builds its FlexAttention mask with a compiled builder: set from outside, by
        # a compiled training run (hydra_x.train.unified.build), as its blocks are compiled.
        self.compile_block_mask = False
        hidden = llm.config.hidden_size
        width = config.head_width or hidden
        projector_in = config.tokenizer.width + (config.latent_channels if config.visual_latent_skip else 0)
        self.projector = Projector(projector_in, hidden, config.projector_depth, config.visual_positions)
        self.time_embed = _time_embedding(hidden, config.time_dim)
        self.flow_head = FlowHead(
            hidden,
            config.latent_channels,
            width,
            config.head_depth,
            config.time_dim,
            config.flow_prediction,
            config.head_attention_layers,
            "causal" if config.video_attention == "causal" else "full",
            config.head_attention_input,
            config.edit_source_input,
        )

    # ------------------------------------------------------------------ construction

    def grow_head_attention(self, layers: int) -> None:
        """Give the flow head ``layers`` attention layers in all, the new ones with zero gates: the model's outputs do
        not change until they train (a per-token head trained first, then given attention among its tokens)."""
        have = self.config.head_attention_layers
        if layers < have:
            raise ValueError(f"the flow head has {have} attention layers; it cannot shrink to {layers}")
        self.flow_head.add_attention_layers(layers - have)
        self.config.head_attention_layers = layers

    @torch.no_grad()
    def init_heads(self, seed: int | None = None) -> None:
        """(Re-)initialise the projector, time embedding and flow head (the tokenizer and LLM keep theirs)."""
        from hydra_x.nn.layers import init_weights

        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            for module in (self.projector, self.time_embed, self.flow_head):
                init_weights(module, 0.02)
        self.flow_head.init_zero()
        if self.projector.positions is not None and self.config.visual_positions_zero_init:
            self.projector.positions.init_zero()

    @classmethod
    def from_parts(
        cls, config: UnifiedConfig, tokenizer: HydraXTokenizer, llm: nn.Module, text_tokenizer, seed: int = 0
    ) -> HydraX:
        """Join a tokenizer and an LLM (its visual special tokens added) with freshly initialised heads."""
        from hydra_x.unified.llm import add_visual_tokens

        add_visual_tokens(llm, text_tokenizer)
        model = cls(config, tokenizer, llm, text_tokenizer)
        model.init_heads(seed)
        return model.to(next(llm.parameters()).device)

    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        tokenizer: str | Path | HydraXTokenizer | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **overrides: Any,
    ) -> HydraX:
        """Preset ``name`` with ``overrides`` (UnifiedConfig fields); see ``from_config`` for the rest."""
        config = unified_config(name, **overrides)
        return cls.from_config(config, tokenizer=tokenizer, seed=seed, device=device, dtype=dtype)

    @classmethod
    def from_config(
        cls,
        config: UnifiedConfig,
        *,
        tokenizer: str | Path | HydraXTokenizer | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> HydraX:
        """The tokenizer from ``tokenizer`` (a trained one: a folder, a tokenizer run folder, a Hub id or a
        model; its config replaces ``config.tokenizer``) or random from ``config``; the LLM as ``config.llm``
        names it (pretrained where it is a real LLM); the heads random from ``seed``."""
        from hydra_x.unified.llm import load_llm

        tok = _load_tokenizer(tokenizer, config, seed)
        config = config.replace(tokenizer=tok.config)
        llm, text_tokenizer = load_llm(config.llm, dtype=torch.float32, attn_implementation=_attn(config))
        model = cls.from_parts(config, tok, llm, text_tokenizer, seed=seed)
        return model.to(device=device or "cpu", dtype=dtype)

    @classmethod
    def on_meta(cls, config: UnifiedConfig, llm_config, text_tokenizer) -> HydraX:
        """The model's structure without weights (the meta device), e.g. to load a gathered state into."""
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            tok = HydraXTokenizer(config.tokenizer)
            llm = AutoModelForCausalLM.from_config(llm_config)
            return cls(config, tok, llm, text_tokenizer)

    def save_pretrained(self, folder: str | Path) -> Path:
        """One folder: config.json, tokenizer/ (HydraXTokenizer), llm/ (transformers, with its text tokenizer)
        and heads.safetensors (projector, time embedding, flow head)."""
        from safetensors.torch import save_file

        from hydra_x._version import __version__
        from hydra_x.hf import quiet_loading

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder / "tokenizer")
        with quiet_loading():
            self.llm.save_pretrained(folder / "llm", safe_serialization=True)
        self.text_tokenizer.save_pretrained(folder / "llm")
        heads = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k.startswith(HEAD_PREFIXES)}
        tmp = folder / f".{HEADS_FILE}.partial"
        save_file(heads, str(tmp))
        tmp.replace(folder / HEADS_FILE)
        config = {"model_type": MODEL_TYPE, "hydra_x_version": __version__, **self.config.to_dict(), "llm": "llm"}
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        return folder

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> HydraX:
        """A folder written by ``save_pretrained``, or a Hub repo id holding one."""
        from safetensors.torch import load_file

        from hydra_x.unified.llm import load_llm

        folder = _local_folder(name_or_path)
        raw = json.loads((folder / "config.json").read_text())
        if raw.pop("model_type", None) != MODEL_TYPE:
            raise ValueError(f"{name_or_path} is not a HydraX checkpoint (config.json model_type is not {MODEL_TYPE})")
        raw.pop("hydra_x_version", None)
        raw["llm"] = str(folder / raw.get("llm", "llm"))
        config = UnifiedConfig.from_dict(raw)
        tok = HydraXTokenizer.from_pretrained(folder / "tokenizer")
        llm, text_tokenizer = load_llm(config.llm, dtype=torch.float32, attn_implementation=_attn(config))
        model = cls(config, tok, llm, text_tokenizer)
        state = load_file(str(folder / HEADS_FILE))
        missing = sorted(k for k in model.state_dict() if k.startswith(HEAD_PREFIXES) and k not in state)
        unexpected = sorted(k for k in state if not k.startswith(HEAD_PREFIXES))
        if missing or unexpected:
            raise ValueError(f"{folder / HEADS_FILE}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        model.load_state_dict(state, strict=False)
        return model.to(device=device or "cpu", dtype=dtype).eval()

    # ------------------------------------------------------------------ visual tokens

    @property
    def dtype(self) -> torch.dtype:
        return self.projector.mlp[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.projector.mlp[0].weight.device

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) or (B, 3, F, H, W) -> clean normalised latents (B, C, S, h, w) (posterior mean)."""
        z = self.tokenizer.encode(pixels.to(device=self.device, dtype=self.tokenizer._dtype()))
        return z.float()

    def visual_embeddings(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, C, S, h, w), clean or noisy -> LLM input embeddings (B, S * h * w, D), the Sem-ViT's tokens
        through the projector, plus the time embedding of ``t`` (B,) for noisy ones."""
        s = self.tokenizer.semantic(z)  # (B, S, N, D_sem): the tokenizer's own mask (tubelet for videos)
        h = self.projector(self._projector_input(s, z).flatten(1, 2), grid=tuple(z.shape[2:]))
        if t is not None:
            h = h + self.time_embed(t.to(self.device)).to(h.dtype)[:, None]
        return h

    def pair_embeddings(
        self, z_src: torch.Tensor, z_tgt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Source-Target Interaction: a clean source and a noisy target latent (B, C, 1, h, w) each through the
        Sem-ViT as one 2-step clip under the tubelet mask, whatever the tokenizer's own mode: the target's tokens
        see the source's, the source's see only themselves (so they equal the source's alone). Returns the LLM
        embeddings (B, N, D) of the source, and of the target with the time embedding of ``t`` (B,)."""
        z = torch.cat([z_src, z_tgt], dim=2)
        s = self.tokenizer.semantic(z, mode="tubelet")  # (B, 2, N, D_sem)
        h = self.projector(self._projector_input(s, z), grid=(1, *z_src.shape[3:]))  # (B, 2, N, D): each alone
        return h[:, 0], h[:, 1] + self.time_embed(t.to(self.device)).to(h.dtype)[:, None]

    def _projector_input(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The Sem-ViT's features s (B, S, N, D_sem) of latents z (B, C, S, h, w), with each token's latent
        beside its feature under visual_latent_skip, in the projector's dtype."""
        if self.config.visual_latent_skip:
            s = torch.cat([s, self.tokenizer.latent_tokens(z).to(s.dtype)], dim=-1)
        return s.to(self.dtype)

    @torch.no_grad()
    def encode_each(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Clean latents (C, S, h, w) of several images / clips; those of one shape are encoded together."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(pixels):
            groups.setdefault(tuple(x.shape), []).append(i)
        out: dict[int, torch.Tensor] = {}
        for members in groups.values():
            z = self.encode(self._to_device_stacked([pixels[i] for i in members]))
            out.update(zip(members, z))
        return [out[i] for i in range(len(pixels))]

    def _to_device_stacked(self, pictures: list[torch.Tensor]) -> torch.Tensor:
        """Pictures of one shape as one stack on the device. Rows of one host stack (a data worker's step arrives
        with one per shape, page-locked) go over in one copy, and are picked there; others each in a copy of their
        own (asynchronous from page-locked pixels), stacked on the device: a stack on the host would read every
        pixel of the step once more on the training process's critical path."""
        rows = rows_of_one_stack(pictures)
        if rows is None:
            return torch.stack([x.to(self.device, non_blocking=True) for x in pictures])
        whole = pictures[0]._base.to(self.device, non_blocking=True)
        if rows == list(range(len(whole))):
            return whole
        return whole[to_device_async(torch.tensor(rows), self.device)]

    def _embed_visuals(
        self, batch: PackedBatch, visuals: VisualInputs, z0: list[torch.Tensor]
    ) -> tuple[torch.Tensor, NoisedBlocks | None]:
        """(V, D) embeddings of every visual position in placement order, and the generated blocks noised (None
        without any)."""
        if len(z0) != len(batch.placements):
            raise ValueError(f"{len(batch.placements)} visual blocks in the batch, {len(z0)} given")
        gen = [i for i, p in enumerate(batch.placements) if p.role == "generate"]
        times, noisy = {}, None
        z_in = list(z0)
        if gen:
            if visuals.t is None or visuals.noise is None or len(visuals.noise) != len(gen):
                raise ValueError(f"{len(gen)} generated blocks need as many flow times and noises")
            # On the model's device wherever given (training draws them there; a caller may not): no-op if so
            times = dict(zip(gen, visuals.t.to(self.device, non_blocking=True).unbind()))
            noisy = noised(z0, gen, visuals.noise, times, self.device)
            for i, z in noisy.latents.items():
                z_in[i] = z
        outputs: list[tuple[list[int], torch.Tensor]] = []  # (blocks, their embeddings (n, T, D)) per Sem-ViT call
        paired: set[int] = set()
        if visuals.pairs and self.config.edit_layout == "sti":
            paired = self._embed_pairs(visuals.pairs, z_in, times, outputs)
        groups: dict[tuple[int, ...], list[int]] = {}  # one Sem-ViT call per latent shape, clean and noisy together
        for i, z in enumerate(z_in):
            if i not in paired:
                groups.setdefault(tuple(z.shape), []).append(i)
        for members in groups.values():
            z = torch.stack([z_in[i] for i in members]).to(self.device)
            emb = self.visual_embeddings(z)
            if any(i in times for i in members):
                # The time embedding on the noisy members only; times and flags are stacked from device scalars, so
                # nothing is copied from the host in the middle of the forward.
                zero = emb.new_zeros((), dtype=torch.float32)
                one = zero + 1
                t = torch.stack([times[i].to(zero) if i in times else zero for i in members])
                on = torch.stack([one if i in times else zero for i in members])
                emb = emb + (self.time_embed(t) * on[:, None]).to(emb.dtype)[:, None]
            outputs.append((members, emb))
        return in_order(outputs, range(len(z_in)), self.device), noisy

    def _embed_pairs(self, pairs, z_in: list[torch.Tensor], times: dict, outputs: list) -> set[int]:
        """Embed the editing pairs jointly (pairs of one latent shape together) into ``outputs``; returns the
        placement indices they cover."""
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for src, tgt in pairs:
            if tgt not in times or src in times:
                raise ValueError(
                    f"an editing pair needs a clean source and a generated target, got blocks {src}, {tgt}"
                )
            groups.setdefault(tuple(z_in[src].shape), []).append((src, tgt))
        for members in groups.values():
            z_src = torch.stack([z_in[s] for s, _ in members]).to(self.device)
            z_tgt = torch.stack([z_in[g] for _, g in members]).to(self.device)
            src_emb, tgt_emb = self.pair_embeddings(z_src, z_tgt, torch.stack([times[g] for _, g in members]))
            outputs += [([s for s, _ in members], src_emb), ([g for _, g in members], tgt_emb)]
        return {i for pair in pairs for i in pair}

    # ------------------------------------------------------------------ forward

    def llm_hidden(self, batch: PackedBatch, embeds: torch.Tensor) -> torch.Tensor:
        """The LLM's last hidden states (B, L, D) for input embeddings with the batch's mask and positions: a
        FlexAttention BlockMask when the LLM runs FlexAttention, else the dense additive 4D mask."""
        if getattr(self.llm.config, "_attn_implementation", None) == FLEX:
            mask = flex_block_mask(batch, self.config.video_attention, compiled=self.compile_block_mask)
        else:
            mask = additive_mask(attention_mask(batch, self.config.video_attention), embeds.dtype)
        # No KV cache: nothing reads it, and building one makes every layer a graph of its own under torch.compile
        # (each guards on its cache slot) and copies every layer's keys and values once more.
        out = self.llm.get_decoder()(
            inputs_embeds=embeds, attention_mask=mask, position_ids=batch.position_ids, use_cache=False
        )
        return out.last_hidden_state

    def forward(self, batch: PackedBatch, visuals: VisualInputs) -> UnifiedOutput:
        gen = [i for i, p in enumerate(batch.placements) if p.role == "generate"]
        placements = [batch.placements[i] for i in gen]
        index = batch.index(placements, self.device)  # on the host: the forward never waits for the GPU
        batch = batch.to(self.device)
        embeds = self.llm.get_input_embeddings()(batch.input_ids)  # (B, L, D)
        z0 = visuals.latents(self) if batch.placements else []
        if batch.placements:
            visual, noisy = self._embed_visuals(batch, visuals, z0)
            embeds = embeds.index_put((index.visual_rows, index.visual_cols), visual.to(embeds.dtype))
        hidden = self.llm_hidden(batch, embeds)
        # Only where a token is predicted: (K, V) logits
        logits = self.llm.get_output_embeddings()(hidden.flatten(0, 1)[index.predicted])
        text_sum = F.cross_entropy(logits.float(), index.predicted_targets, reduction="sum")
        flow_sum, elements, velocity = hidden.new_zeros((), dtype=torch.float32), 0, None
        if gen:
            z_t, target, t = noisy.z_t, noisy.target, noisy.t
            grids = [(p.steps, *z0[i].shape[-2:]) for i, p in zip(gen, placements)]
            source, sources = None, {tgt: src for src, tgt in visuals.pairs}
            # The head's source input runs on every batch (zeros without edits); the copy prior only with edits.
            if self.config.edit_source_input or (self.config.edit_copy_prior and sources):
                blocks = [z0[sources[i]] if i in sources else torch.zeros_like(z0[i]) for i in gen]
                source = torch.cat([z.flatten(1) for z in blocks], 1).T  # (s h w) x c, step-major, as z_t
            head_source = source if self.config.edit_source_input else None
            velocity = self.flow_head(hidden[index.generated_rows, index.generated_cols], z_t, t, grids, head_source)
            if self.config.edit_copy_prior and sources:
                edited = torch.cat([torch.full((p.length,), i in sources) for i, p in zip(gen, placements)])
                edited = edited.to(self.device, non_blocking=True)
                velocity = velocity + copy_velocity(z_t, source, t, self.config.flow_prediction) * edited[:, None]
            flow_sum = (velocity.float() - target.float()).square().sum()
            elements = target.numel()
        flow_sum = flow_sum + self._untouched(batch, hidden, bool(gen))
        return UnifiedOutput(text_sum, index.text_tokens, flow_sum, elements, velocity)

    def _untouched(self, batch: PackedBatch, hidden: torch.Tensor, generated: bool) -> torch.Tensor:
        """0 x the output of every part this batch did not run (no visual block: the Sem-ViT and projector; no
        generated block: the time embedding and flow head), so that every parameter gets a gradient (zero) on
        every process: FSDP2 reduces the gradients of what ran, and processes whose batches ran different
        parts would otherwise reduce buffers of different sizes."""
        out = hidden.new_zeros((), dtype=torch.float32)
        c = self.config.latent_channels
        if not batch.placements:
            z = hidden.new_zeros((1, c, 1, 1, 1), dtype=self.tokenizer._dtype())
            out = out + 0.0 * self.visual_embeddings(z).float().sum()
        if not generated:
            t = hidden.new_zeros(1, dtype=torch.float32)
            v = self.flow_head(hidden[:1, 0], hidden.new_zeros((1, c)), t, [(1, 1, 1)])
            out = out + 0.0 * (v.float().sum() + self.time_embed(t).float().sum())
        return out

    # ------------------------------------------------------------------ inference (hydra_x.unified.sampling)

    def chat(self, prompt: str | Sequence[dict[str, str]], **kwargs: Any) -> str:
        from hydra_x.unified.chat import chat

        return chat(self, prompt, **kwargs)

    def generate_image(self, prompt: str, **kwargs: Any) -> torch.Tensor:
        from hydra_x.unified.sampling import generate_image

        return generate_image(self, prompt, **kwargs)

    def edit(self, image: torch.Tensor, instruction: str, **kwargs: Any) -> torch.Tensor:
        from hydra_x.unified.sampling import edit

        return edit(self, image, instruction, **kwargs)

    def generate_video(self, prompt: str, **kwargs: Any) -> torch.Tensor:
        from hydra_x.unified.sampling import generate_video

        return generate_video(self, prompt, **kwargs)


def _attn(config: UnifiedConfig) -> str:
    return FLEX if config.attention == "flex" else "sdpa"


def _time_embedding(dim: int, freq_dim: int) -> nn.Module:
    from hydra_x.nn.adaln import TimeEmbedding

    return TimeEmbedding(dim, freq_dim)


def _load_tokenizer(source, config: UnifiedConfig, seed: int) -> HydraXTokenizer:
    if isinstance(source, HydraXTokenizer):
        return source
    if source is None:
        return HydraXTokenizer.from_config(config.tokenizer, seed=seed)
    folder = Path(source)
    if (folder / "export" / "config.json").is_file():  # a tokenizer training run: its export
        folder = folder / "export"
    return HydraXTokenizer.from_pretrained(folder if folder.exists() else str(source))


def _local_folder(name_or_path: str | Path) -> Path:
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder
    # A missing path (absolute, relative with ./, several levels) is a missing folder, not a Hub id: the Hub's own
    # error for it ("Repo id must be in the form ...") would hide that the folder is absent.
    if not folder.exists() and "/" in str(name_or_path) and not looks_like_path(str(name_or_path)):
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path)))
    raise FileNotFoundError(f"{name_or_path}: no such HydraX checkpoint folder")
