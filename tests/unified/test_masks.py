"""Attention masks, proven on a real forward of a tiny Llama (inputs_embeds + 4D mask + position_ids)."""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import DynamicCache, LlamaModel

from hydra_x.unified.masks import (
    additive_mask,
    attention_mask,
    flex_block_mask,
    flex_mask_mod,
    query_mask,
    query_position_ids,
    visible_pairs,
)
from hydra_x.unified.packing import PackedBatch, pack, pad_to_batch
from hydra_x.unified.sequence import VisualSpec, build_sequence, generation_sample
from tests.unified.fixtures import tiny_llama, tiny_tokenizer

MODES = ("bidirectional", "causal")
# transformers 5.x renamed LlamaModel.forward's past_key_values to cache.
CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_llama("sdpa")


def visual_embeds(batch: PackedBatch, seed: int = 1) -> torch.Tensor:
    rows, _ = batch.visual_index()
    return torch.randn(len(rows), 64, generator=torch.Generator().manual_seed(seed))  # (V, D)


@torch.no_grad()
def hidden(model, batch: PackedBatch, mask: torch.Tensor, visual: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L, D) last hidden states, visual positions' embeddings replaced by ``visual``."""
    embeds = model.get_input_embeddings()(batch.input_ids)  # (B, L, D)
    if visual is not None:
        rows, cols = batch.visual_index()
        embeds[rows, cols] = visual
    out = model.model(inputs_embeds=embeds, attention_mask=mask, position_ids=batch.position_ids)
    return out.last_hidden_state


def reference(batch: PackedBatch, video_attention: str) -> torch.Tensor:
    """The mask rule written out position by position."""
    b, n = batch.sample.shape
    out = torch.zeros(b, 1, n, n, dtype=torch.bool)
    for r in range(b):
        s, blk, st = batch.sample[r].tolist(), batch.block[r].tolist(), batch.step[r].tolist()
        for i in range(n):
            for j in range(n):
                if s[i] < 0 or s[j] < 0 or s[i] != s[j]:
                    out[r, 0, i, j] = i == j
                elif blk[i] >= 0 and blk[i] == blk[j]:
                    out[r, 0, i, j] = video_attention == "bidirectional" or st[j] <= st[i]
                else:
                    out[r, 0, i, j] = j <= i
    return out


def mixed(tok) -> list:
    video = VisualSpec.video(3, 2)
    return [
        build_sequence(
            tok,
            [{"role": "user", "content": "a photo<image> and a video<video>"}, {"role": "assistant", "content": "ok"}],
            [VisualSpec.image(3), video],
        ),
        generation_sample(tok, VisualSpec.video(2, 3), "waves"),
        build_sequence(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Two dogs."}]),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_dense_mask_matches_the_rule(tok, mode):
    ss = mixed(tok)
    batch = pack(ss, len(ss[0]) + len(ss[2]) + 2, tok.pad_token_id)
    assert len(batch.rows) == 2 and (~batch.valid).any()
    mask = attention_mask(batch, mode)
    assert mask.shape == (2, 1, batch.sample.shape[1], batch.sample.shape[1]) and mask.dtype == torch.bool
    assert torch.equal(mask, reference(batch, mode))
    assert mask.any(-1).all()  # no empty rows: SDPA would give NaN


@pytest.mark.parametrize("mode", MODES)
def test_visible_pairs_are_the_dense_masks_true_entries(tok, mode):
    ss = mixed(tok)
    batch = pack(ss, len(ss[0]) + len(ss[2]) + 2, tok.pad_token_id)
    mask = attention_mask(batch, mode)
    assert visible_pairs(batch, mode) == (int(mask.sum()), mask.numel())
    # one causal text sample of n tokens in a row of L: n (n + 1) / 2 pairs, and each pad sees itself
    text = ss[2]
    n, length = len(text), len(text) + 5
    assert visible_pairs(pack([text], length, tok.pad_token_id), mode) == (n * (n + 1) // 2 + 5, length * length)


def test_text_before_an_image_ignores_it_and_image_tokens_see_each_other(tok, model):
    s = build_sequence(
        tok,
        [
            {"role": "user", "content": "Describe the image.<image>and<image>"},
            {"role": "assistant", "content": "Cats."},
        ],
        [VisualSpec.image(4), VisualSpec.image(4)],
    )
    batch = pad_to_batch([s], tok.pad_token_id)
    mask = attention_mask(batch)
    vis = visual_embeds(batch)  # (8, D): image 0, then image 1
    base = hidden(model, batch, mask, vis)
    first, second = s.blocks

    other = vis.clone()
    other[4:] += torch.randn(4, 64)
    moved = hidden(model, batch, mask, other)
    assert torch.equal(moved[0, : second.start], base[0, : second.start])  # bitwise: text and image 0 before it
    assert not torch.allclose(moved[0, second.end :], base[0, second.end :])  # the text after does see it

    last = vis.clone()
    last[3] += 1.0  # the last token of image 0
    moved = hidden(model, batch, mask, last)
    assert not torch.allclose(moved[0, first.start], base[0, first.start], atol=1e-4)  # its first token sees it
    assert torch.equal(moved[0, : first.start], base[0, : first.start])


@pytest.mark.parametrize("mode", MODES)
def test_video_step_rule(tok, model, mode):
    s = build_sequence(tok, [{"role": "user", "content": "a video<video>"}], [VisualSpec.video(3, 2)])
    batch = pad_to_batch([s], tok.pad_token_id)
    mask = attention_mask(batch, mode)
    vis = visual_embeds(batch)
    base = hidden(model, batch, mask, vis)
    step1 = vis.clone()
    step1[2:4] += 1.0  # latent step 1
    moved = hidden(model, batch, mask, step1)
    start = s.blocks[0].start
    step0 = slice(start, start + 2)
    if mode == "causal":
        assert torch.equal(moved[0, step0], base[0, step0])
        assert not torch.allclose(moved[0, start + 4 : start + 6], base[0, start + 4 : start + 6], atol=1e-4)
    else:
        assert not torch.allclose(moved[0, step0], base[0, step0], atol=1e-4)
    assert torch.equal(moved[0, :start], base[0, :start])


@pytest.mark.parametrize("mode", MODES)
def test_packed_samples_never_see_each_other(tok, model, mode):
    ss = mixed(tok)
    batch = pack(ss, sum(len(s) for s in ss) + 3, tok.pad_token_id)
    assert batch.rows == [[0, 1, 2]]
    vis = visual_embeds(batch)
    packed = hidden(model, batch, attention_mask(batch, mode), vis)
    assert torch.isfinite(packed).all()  # pads included
    used = 0
    for k, s in enumerate(ss):
        alone = pad_to_batch([s], tok.pad_token_id)
        n_vis = int((s.block >= 0).sum())
        ref = hidden(model, alone, attention_mask(alone, mode), vis[used : used + n_vis])
        used += n_vis
        _, start, n = batch.offsets[k]
        torch.testing.assert_close(packed[0, start : start + n], ref[0], atol=1e-5, rtol=0)
    text_only = ss[2]  # and against transformers' own causal path
    with torch.no_grad():
        plain = model.model(input_ids=text_only.input_ids[None]).last_hidden_state
    _, start, n = batch.offsets[2]
    torch.testing.assert_close(packed[0, start : start + n], plain[0], atol=1e-5, rtol=0)


def test_bool_and_additive_masks_agree_and_eager_needs_additive(tok, model):
    batch = pack(mixed(tok), 120, tok.pad_token_id)
    vis = visual_embeds(batch)
    mask = attention_mask(batch, "causal")
    add = additive_mask(mask, torch.float32)
    assert add.dtype == torch.float32 and torch.equal(add == 0, mask)
    assert (add[~mask] == torch.finfo(torch.float32).min).all()

    @torch.no_grad()
    def logits(m, mask):
        return m.lm_head(hidden(m, batch, mask, vis))  # (B, L, V)

    sdpa_bool = logits(model, mask)
    torch.testing.assert_close(logits(model, add), sdpa_bool, atol=1e-5, rtol=0)
    eager = tiny_llama("eager")
    assert eager.config._attn_implementation == "eager"
    torch.testing.assert_close(logits(eager, add), sdpa_bool, atol=1e-5, rtol=0)
    assert not torch.allclose(logits(eager, mask), sdpa_bool, atol=1e-2)  # the silent trap: bool read as +1 / +0


@pytest.mark.parametrize("mode", MODES)
def test_flex_mask_mod_equals_dense_mask(tok, mode):
    from torch.nn.attention.flex_attention import create_mask

    batch = pack(mixed(tok), 80, tok.pad_token_id)
    b, n = batch.sample.shape
    dense = create_mask(flex_mask_mod(batch, mode), b, 1, n, n, device="cpu")
    assert torch.equal(dense, attention_mask(batch, mode))


def test_flex_block_mask_attention(tok):
    from torch.nn.attention.flex_attention import flex_attention

    batch = pack(mixed(tok), 128, tok.pad_token_id)
    block_mask = flex_block_mask(batch, "causal")
    q, k, v = torch.randn(3, batch.sample.shape[0], 2, 128, 16).unbind(0)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(batch, "causal"))
    torch.testing.assert_close(flex_attention(q, k, v, block_mask=block_mask), ref, atol=1e-5, rtol=0)


def test_a_compiled_block_mask_is_the_eager_one_and_compiles_for_two_row_counts(tok):
    # The GPU forward builds its mask compiled: the same blocks, and after the first two row counts (the second
    # makes the count dynamic) no more graphs, whatever count a step packs.
    from torch._dynamo.utils import counters

    torch.compiler.reset()
    counters.clear()
    for rows in (2, 3, 4, 3, 5, 2):
        batch = pack(mixed(tok), 48, tok.pad_token_id, row_multiple=rows)
        assert batch.sample.shape == (rows, 48)
        compiled = flex_block_mask(batch, "causal", compiled=True, BLOCK_SIZE=16)
        eager = flex_block_mask(batch, "causal", BLOCK_SIZE=16)
        assert torch.equal(compiled.to_dense(), eager.to_dense())
        assert torch.equal(compiled.full_kv_num_blocks, eager.full_kv_num_blocks)
        assert eager.to_dense()[0, 0].sum() < eager.to_dense()[0, 0].numel()  # some blocks are skipped
    assert counters["stats"]["unique_graphs"] == 2


def test_a_block_mask_built_under_a_dispatch_mode_leaves_the_compiled_builder_compiling(tok):
    # The engine's FLOP-counted first step runs under FlopCounterMode; code torch.compile first meets under such
    # a mode runs eagerly for good, so the builder must not be compiled there.
    from torch._dynamo.utils import counters
    from torch.utils.flop_counter import FlopCounterMode

    torch.compiler.reset()
    counters.clear()
    batch = pack(mixed(tok), 48, tok.pad_token_id, row_multiple=3)
    with FlopCounterMode(display=False):
        counted = flex_block_mask(batch, compiled=True, BLOCK_SIZE=16)
    after = flex_block_mask(batch, compiled=True, BLOCK_SIZE=16)
    assert torch.equal(counted.to_dense(), after.to_dense())
    assert counters["frames"]["ok"] > 0  # compiled after the counted step


@pytest.mark.gpu
def test_a_compiled_block_mask_on_cuda_serves_every_row_count_and_attends_as_the_eager_one(tok):
    # What a GPU run's steps do: a new row count now and then, the compiled builder's graph made dynamic by the
    # second; FlexAttention (compiled, as training calls it) forward and backward give what the eager mask gives.
    from hydra_x.unified.flex import _compiled_flex

    torch.compiler.reset()
    for rows in (2, 3, 4, 3, 5):
        batch = pack(mixed(tok), 256, tok.pad_token_id, row_multiple=rows).to("cuda")
        compiled = flex_block_mask(batch, "causal", compiled=True)
        eager = flex_block_mask(batch, "causal")
        assert torch.equal(compiled.to_dense(), eager.to_dense())
        q, k, v = torch.randn(3, rows, 2, 256, 16, device="cuda", requires_grad=True).unbind(0)
        grads = []
        for mask in (compiled, eager):
            out = _compiled_flex()(q, k, v, block_mask=mask)
            grads.append((out, *torch.autograd.grad(out.square().sum(), (q, k, v))))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_query_mask_with_kv_cache_equals_full_forward(tok, model, mode):
    video = VisualSpec.video(2, 3)
    ss = [generation_sample(tok, video, "a video of waves on the shore"), generation_sample(tok, video, "")]
    prompts = pad_to_batch([s.prefix(s.blocks[0].start) for s in ss], tok.pad_token_id, side="left")
    lq = video.length
    mask = query_mask(prompts.valid, video.steps, video.tokens_per_step, mode)
    assert mask.shape == (2, 1, lq, prompts.sample.shape[1] + lq)
    vis = torch.randn(2, lq, 64, generator=torch.Generator().manual_seed(3))  # (B, Lq, D)
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        model.model(
            inputs_embeds=model.get_input_embeddings()(prompts.input_ids),
            attention_mask=attention_mask(prompts, mode),
            position_ids=prompts.position_ids,
            **{CACHE_ARG: cache},
            use_cache=True,
        )
        runs = []
        for _ in range(2):  # a denoising loop reuses the prefix: drop the block's keys each time
            out = model.model(
                inputs_embeds=vis,
                attention_mask=mask,
                position_ids=query_position_ids(prompts.valid, lq),
                **{CACHE_ARG: cache},
                use_cache=True,
            ).last_hidden_state
            cache.crop(-lq)
            runs.append(out)
    assert torch.equal(runs[0], runs[1])
    for k, s in enumerate(ss):
        alone = pad_to_batch([s], tok.pad_token_id)
        ref = hidden(model, alone, attention_mask(alone, mode), vis[k])
        blk = s.blocks[0]
        torch.testing.assert_close(runs[0][k], ref[0, blk.start : blk.end], atol=1e-5, rtol=0)


def test_bad_video_attention(tok):
    batch = pad_to_batch(mixed(tok)[:1], tok.pad_token_id)
    with pytest.raises(ValueError, match="video_attention"):
        attention_mask(batch, "full")  # type: ignore[arg-type]
