"""Chat with HydraX: the prompt, images and videos included, is computed once; tokens are then decoded one at a
time against the KV cache, greedily or by top-p sampling from a seeded generator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from hydra_x.errors import InputError
from hydra_x.unified.masks import additive_mask, attention_mask
from hydra_x.unified.packing import pad_to_batch
from hydra_x.unified.sampling import _decoder_call, check_context, prompt_embeds, sdpa_attention, visual_spec
from hydra_x.unified.sequence import SampleSequence, VisualSpec, build_sequence


def _messages(prompt: str | Sequence[dict[str, str]], image, video) -> tuple[list[dict[str, str]], list]:
    if isinstance(prompt, str):
        place = "<image>\n" if image is not None else "<video>\n" if video is not None else ""
        return [{"role": "user", "content": place + prompt}], [v for v in (image, video) if v is not None]
    return list(prompt), [v for v in (image, video) if v is not None]


@torch.no_grad()
def chat(
    model,
    prompt: str | Sequence[dict[str, str]],
    *,
    image: torch.Tensor | None = None,
    video: torch.Tensor | None = None,
    max_new_tokens: int = 64,
    top_p: float | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    use_cache: bool = True,
) -> str:
    """The assistant's reply to ``prompt`` (a question, or a list of chat messages with ``<image>`` /
    ``<video>`` placeholders) about ``image`` (3, H, W) or ``video`` (3, F, H, W) pixels in [-1, 1]. Greedy
    unless ``top_p`` is given (then nucleus sampling at ``temperature`` from ``seed``)."""
    if image is not None and video is not None:
        raise InputError("give an image or a video, not both")
    if image is not None and image.ndim != 3:
        raise InputError(f"an image is (3, H, W); got {tuple(image.shape)} (use video= for frames)")
    if video is not None and video.ndim != 4:
        raise InputError(f"a video is (3, F, H, W) frames; got {tuple(video.shape)}")
    if video is not None and not model.config.video:
        raise InputError("this model is image-only (video=False): it cannot read videos")
    messages, media = _messages(prompt, image, video)
    kind = "image" if image is not None else "video"
    for m in media:
        visual_spec(model, kind, m.shape[-2], m.shape[-1], m.shape[1] if kind == "video" else None)
    latents = [model.encode(m.unsqueeze(0))[0] for m in media]  # (C, S, h, w) each
    specs = [VisualSpec(kind, z.shape[1], z.shape[2] * z.shape[3]) for z in latents]
    seq = build_sequence(model.text_tokenizer, messages, specs, add_generation_prompt=True)
    check_context(model, len(seq) + max_new_tokens)
    with sdpa_attention(model):
        ids = decode_tokens(model, seq, latents, max_new_tokens, top_p, temperature, seed, use_cache)
    return model.text_tokenizer.decode(ids, skip_special_tokens=True).strip()


def _next_token(logits: torch.Tensor, top_p: float | None, temperature: float, generator) -> int:
    if top_p is None:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / max(temperature, 1e-6), -1)
    sorted_p, order = probs.sort(descending=True)
    keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest set whose mass reaches top_p
    sorted_p = torch.where(keep, sorted_p, 0)
    return int(order[torch.multinomial(sorted_p.cpu() / sorted_p.sum(), 1, generator=generator)])


def decode_tokens(
    model, seq: SampleSequence, latents, max_new_tokens, top_p, temperature, seed, use_cache
) -> list[int]:
    """Token ids the assistant writes after ``seq`` (an inference prompt), up to its end-of-turn token."""
    tok = model.text_tokenizer
    stop = {i for i in (tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")) if isinstance(i, int) and i >= 0}
    generator = torch.Generator().manual_seed(seed)
    head = model.llm.get_output_embeddings()
    embed = model.llm.get_input_embeddings()
    out: list[int] = []
    if use_cache:
        from transformers import DynamicCache

        kv = DynamicCache()
        batch = pad_to_batch([seq], tok.pad_token_id).to(model.device)
        embeds = prompt_embeds(model, batch, [latents])
        mask = additive_mask(attention_mask(batch, model.config.video_attention), embeds.dtype)
        hidden = _decoder_call(model, embeds, mask, batch.position_ids, kv)[:, -1]
        position = len(seq)
    for _ in range(max_new_tokens):
        if not use_cache:  # the reference path: the whole sequence again for every token
            grown = _extended(seq, out)
            batch = pad_to_batch([grown], tok.pad_token_id).to(model.device)
            hidden = model.llm_hidden(batch, prompt_embeds(model, batch, [latents]))[:, -1]
        token = _next_token(head(hidden)[0], top_p, temperature, generator)
        if token in stop:
            break
        out.append(token)
        if use_cache:
            ids = torch.tensor([[token]], device=model.device)
            visible = torch.zeros(1, 1, 1, position + 1, dtype=embeds.dtype, device=model.device)
            hidden = _decoder_call(model, embed(ids), visible, torch.tensor([[position]], device=model.device), kv)[
                :, -1
            ]
            position += 1
    return out


def _extended(seq: SampleSequence, tokens: list[int]) -> SampleSequence:
    """``seq`` with ``tokens`` appended as text."""
    extra = torch.tensor(tokens, dtype=torch.long)
    minus = torch.full_like(extra, -1)
    return replace(
        seq,
        input_ids=torch.cat([seq.input_ids, extra]),
        targets=torch.cat([seq.targets, torch.full_like(extra, -100)]),
        block=torch.cat([seq.block, minus]),
        step=torch.cat([seq.step, minus]),
    )
