"""Chat-formatted sequences: tokens, targets, blocks; packing and padding."""

from __future__ import annotations

import pytest
import torch

from hydra_x.unified.packing import pack, pad_to_batch, token_runs
from hydra_x.unified.sequence import (
    BEGIN_IMAGE,
    END_IMAGE,
    IGNORE,
    VisualSpec,
    VisualTokenIds,
    add_visual_tokens,
    build_sequence,
    generation_sample,
    understanding_sample,
)
from tests.unified.fixtures import CHATML, DEFAULT_SYSTEM, LLAMA3, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def learned_text(tok, s) -> str:
    return tok.decode(s.targets[s.targets != IGNORE])


def check_shift(s) -> None:
    """Every target is the next input token."""
    where = (s.targets != IGNORE).nonzero().flatten()
    assert torch.equal(s.targets[where], s.input_ids[where + 1])


def test_targets_are_exactly_the_assistant_turns(tok):
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "<image>\nWhat is in this picture?"},
        {"role": "assistant", "content": "A red cat sits on a blue mat."},
        {"role": "user", "content": "How many apples?"},
        {"role": "assistant", "content": "There are three apples."},
    ]
    s = build_sequence(tok, messages, [VisualSpec.image(6)])
    check_shift(s)
    assert learned_text(tok, s) == "A red cat sits on a blue mat.<|im_end|>There are three apples.<|im_end|>"
    assert (s.targets[s.block >= 0] == IGNORE).all()
    assert s.targets[-1] == IGNORE  # nothing predicts past the sample


@pytest.mark.parametrize(
    "template, closing, starts_with_bos",
    [(CHATML, "<|im_end|>", False), (LLAMA3, "<|eot_id|>", True), (DEFAULT_SYSTEM, "<|im_end|>", False)],
)
def test_other_chat_templates(template, closing, starts_with_bos):
    tok = tiny_tokenizer(template)
    messages = [
        {"role": "user", "content": "Describe the image. <image>"},
        {"role": "assistant", "content": " A cat. "},
    ]
    s = build_sequence(tok, messages, [VisualSpec.image(3)])
    check_shift(s)
    answer = "A cat." if template == LLAMA3 else " A cat. "  # Llama 3's template trims content
    assert learned_text(tok, s) == answer + closing
    assert (s.input_ids[0] == tok.bos_token_id).item() == starts_with_bos


def test_text_tokens_equal_plain_tokenization(tok):
    messages = [{"role": "user", "content": "The quick brown fox"}, {"role": "assistant", "content": "jumps over."}]
    s = build_sequence(tok, messages)
    assert s.input_ids.tolist() == tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]

    messages = [
        {"role": "user", "content": "a photo of<image>the lake, a video<video> of waves"},
        {"role": "assistant", "content": "trees<image>"},
    ]
    visuals = [VisualSpec.image(2), VisualSpec.video(2, 3), VisualSpec.image(1, role="generate")]
    s = build_sequence(tok, messages, visuals)
    rendered = tok.apply_chat_template(messages, tokenize=False)
    pieces = rendered.replace("<video>", "<image>").split("<image>")
    ids = s.input_ids.tolist()
    bounds = [0] + [x for b in s.blocks for x in (b.start - 1, b.end + 1)] + [len(ids)]
    for k, piece in enumerate(pieces):  # the text between blocks is the piece tokenized alone
        assert ids[bounds[2 * k] : bounds[2 * k + 1]] == tok(piece, add_special_tokens=False)["input_ids"]


def test_blocks_steps_and_markers(tok):
    video = VisualSpec.video(3, 2)
    s = build_sequence(tok, [{"role": "user", "content": "<video> and <image>"}], [video, VisualSpec.image(4)])
    ids = VisualTokenIds.from_tokenizer(tok)
    v, i = s.blocks
    assert s.input_ids[v.start - 1] == ids.begin_video and s.input_ids[v.end] == ids.end_video
    assert s.input_ids[i.start - 1] == ids.begin_image and s.input_ids[i.end] == ids.end_image
    assert s.step[v.start : v.end].tolist() == [0, 0, 1, 1, 2, 2]
    assert s.block[v.start : v.end].tolist() == [0] * 6 and s.block[i.start : i.end].tolist() == [1] * 4
    assert (s.input_ids[s.block >= 0] == tok.pad_token_id).all()
    assert int((s.block >= 0).sum()) == 10 and (s.step[s.block < 0] == -1).all()


def test_generation_sample_predicts_begin_and_end_of_turn(tok):
    s = generation_sample(tok, VisualSpec.image(4), "a red cat")
    (blk,) = s.blocks
    assert blk.spec.role == "generate"
    check_shift(s)
    assert learned_text(tok, s) == BEGIN_IMAGE + "<|im_end|>"  # END follows the block unpredicted
    assert s.targets[blk.start - 2] == s.input_ids[blk.start - 1]  # the prompt's last token predicts BEGIN
    assert tok.decode(s.input_ids[blk.end]) == END_IMAGE
    uncond = generation_sample(tok, VisualSpec.image(4), "")
    assert len(uncond) < len(s) and learned_text(tok, uncond) == learned_text(tok, s)

    prompt = s.prefix(blk.start)  # what the sampler feeds before the block
    assert tok.decode(prompt.input_ids).endswith("<|im_start|>assistant\n" + BEGIN_IMAGE)
    assert (prompt.targets == IGNORE).sum() >= len(prompt) - 1 and prompt.targets[-1] == IGNORE
    with pytest.raises(ValueError, match="cut a visual block"):
        s.prefix(blk.start + 1)


def test_inference_prompt_ends_where_the_reply_starts(tok):
    s = understanding_sample(tok, VisualSpec.image(4, role="generate"), "What is this?")
    assert s.blocks[0].spec.role == "understand"
    assert tok.decode(s.input_ids).endswith("What is this?<|im_end|>\n<|im_start|>assistant\n")
    assert (s.targets == IGNORE).all()
    answered = understanding_sample(tok, VisualSpec.video(2, 2), "What is this?", "Waves.")
    assert learned_text(tok, answered) == "Waves.<|im_end|>"


@pytest.mark.parametrize(
    "content, visuals, match",
    [
        ("<image> <image>", [VisualSpec.image(2)], r"2 visual placeholders \(2 <image>, 0 <video>\) but 1 visuals"),
        ("<image>", [VisualSpec.image(2), VisualSpec.image(2)], r"1 visual placeholders .* but 2 visuals"),
        ("no picture", [VisualSpec.image(2)], r"0 visual placeholders .* but 1 visuals"),
        ("<image> then <image>", [VisualSpec.image(2), VisualSpec.video(2, 2)], r"placeholder 1 is <image>.*video"),
        (f"sneaky {BEGIN_IMAGE}", [], "special token"),
    ],
)
def test_placeholder_errors(tok, content, visuals, match):
    with pytest.raises(ValueError, match=match):
        build_sequence(tok, [{"role": "user", "content": content}], visuals)


def test_template_and_tokenizer_errors():
    history_rewriting = CHATML.replace("{% endfor %}", "{% endfor %}{% if not add_generation_prompt %}!{% endif %}")
    tok = tiny_tokenizer(history_rewriting)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    with pytest.raises(ValueError, match="prefix"):
        build_sequence(tok, [*messages, {"role": "user", "content": "and?"}])
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="assistant turn"):
        build_sequence(tok, messages[1:])
    bare = tiny_tokenizer(visual_tokens=False)
    image = ([{"role": "user", "content": "<image>"}], [VisualSpec.image(1)])
    for _ in range(2):  # the visual token ids are looked up once per tokenizer: a failure is not remembered
        with pytest.raises(ValueError, match="no special token"):
            build_sequence(bare, *image)
    add_visual_tokens(bare)  # and a tokenizer that gains them is looked up again
    assert VisualTokenIds.from_tokenizer(bare).begin_image in build_sequence(bare, *image).input_ids.tolist()


def test_spec_validation():
    with pytest.raises(ValueError, match="one latent step"):
        VisualSpec("image", 2, 4)
    with pytest.raises(ValueError, match="kind"):
        VisualSpec("audio", 1, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps >= 1"):
        VisualSpec.video(0, 4)


def samples(tok):
    return [
        understanding_sample(tok, VisualSpec.image(4), "What is in this picture?", "A cat."),
        generation_sample(tok, VisualSpec.video(2, 3), "waves"),
        build_sequence(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Two dogs play."}]),
        generation_sample(tok, VisualSpec.image(2), ""),
    ]


def test_pack_first_fit_positions_and_placements(tok):
    ss = samples(tok)
    lengths = [len(s) for s in ss]
    max_length = lengths[0] + lengths[2] + 3
    batch = pack(ss, max_length, tok.pad_token_id)
    expected_rows: list[list[int]] = []
    room: list[int] = []
    for k, n in enumerate(lengths):  # first fit, in order
        r = next((i for i, free in enumerate(room) if free >= n), None)
        if r is None:
            expected_rows.append([])
            room.append(max_length)
            r = len(room) - 1
        expected_rows[r].append(k)
        room[r] -= n
    assert batch.rows == expected_rows and any(len(r) > 1 for r in batch.rows)
    assert batch.input_ids.shape == (len(expected_rows), max_length)
    for k, s in enumerate(ss):
        row, start, n = batch.offsets[k]
        sl = slice(start, start + n)
        assert torch.equal(batch.input_ids[row, sl], s.input_ids) and torch.equal(batch.targets[row, sl], s.targets)
        assert torch.equal(batch.position_ids[row, sl], torch.arange(n))
        assert (batch.sample[row, sl] == k).all() and torch.equal(batch.block[row, sl], s.block)
        assert batch.targets[row, start + n - 1] == IGNORE  # never predicts the next sample's first token
    pads = ~batch.valid
    assert pads.any() and (batch.targets[pads] == IGNORE).all() and (batch.input_ids[pads] == tok.pad_token_id).all()
    assert (batch.block[pads] == -1).all() and (batch.step[pads] == -1).all()

    keys = [(p.row, p.start) for p in batch.placements]
    assert keys == sorted(keys) and len(keys) == 3
    for p in batch.placements:
        blk = ss[p.sample].blocks[p.block]
        row, start, _ = batch.offsets[p.sample]
        assert (p.row, p.start, p.steps, p.tokens_per_step, p.kind, p.role) == (
            row,
            start + blk.start,
            blk.spec.steps,
            blk.spec.tokens_per_step,
            blk.spec.kind,
            blk.spec.role,
        )
    rows, cols = batch.visual_index()
    assert len(rows) == sum(p.length for p in batch.placements) == int((batch.block >= 0).sum())
    assert (batch.block[rows, cols] >= 0).all()
    order = batch.placements[::-1]  # any subset, in any order: each block's positions, concatenated in that order
    rows, cols = batch.visual_index(order)
    assert list(zip(rows.tolist(), cols.tolist())) == [(p.row, p.start + j) for p in order for j in range(p.length)]


def test_the_batch_index_names_each_predicted_token_its_target_and_each_visual_position(tok):
    ss = samples(tok)
    batch = pack(ss, max(len(s) for s in ss) + 8, tok.pad_token_id)
    generated = [p for p in batch.placements if p.role == "generate"][::-1]  # in the caller's order
    assert generated
    index = batch.index(generated, "cpu")
    flat = batch.targets.flatten()
    assert index.predicted.tolist() == [i for i, t in enumerate(flat.tolist()) if t != IGNORE]
    assert index.predicted_targets.tolist() == [t for t in flat.tolist() if t != IGNORE]
    assert index.text_tokens == len(index.predicted) > 0
    for (rows, cols), got in (
        (batch.visual_index(), (index.visual_rows, index.visual_cols)),
        (batch.visual_index(generated), (index.generated_rows, index.generated_cols)),
    ):
        assert torch.equal(got[0], rows) and torch.equal(got[1], cols)
        assert all(t.dtype == torch.long for t in got)


def test_token_runs_are_the_runs_concatenated():
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, 5000, (40,), generator=g).tolist()
    lengths = torch.randint(0, 70, (40,), generator=g).tolist()
    lengths[3] = lengths[17] = 0  # empty runs leave nothing, and shift nothing after them
    runs = token_runs(starts, lengths)
    assert runs.dtype == torch.long
    assert runs.tolist() == [s + j for s, n in zip(starts, lengths) for j in range(n)]
    assert token_runs([], []).tolist() == []


@pytest.mark.parametrize("multiple", [1, 2, 4])
def test_rows_of_padding_round_the_row_count_up_and_change_nothing_else(tok, multiple):
    ss = samples(tok)
    max_length = max(len(s) for s in ss) + 2
    plain = pack(ss, max_length, tok.pad_token_id)
    padded = pack(ss, max_length, tok.pad_token_id, row_multiple=multiple)
    b = len(plain.rows)
    assert all(plain.rows)  # no rows of padding by default
    assert len(padded.rows) == -(-b // multiple) * multiple and padded.rows[:b] == plain.rows
    assert all(r == [] for r in padded.rows[b:]) and (len(padded.rows) > b) == (b % multiple != 0)
    assert padded.placements == plain.placements and padded.offsets == plain.offsets
    for name in ("input_ids", "targets", "position_ids", "sample", "block", "step"):
        assert torch.equal(getattr(padded, name)[:b], getattr(plain, name)), name
    assert not padded.valid[b:].any() and (padded.targets[b:] == IGNORE).all()
    with pytest.raises(ValueError, match="row_multiple must be >= 1, got 0"):
        pack(ss, max_length, tok.pad_token_id, row_multiple=0)


def test_pack_too_long(tok):
    ss = samples(tok)
    short, long = sorted(ss, key=len)[0], sorted(ss, key=len)[-1]
    with pytest.raises(
        ValueError, match=rf"^sample 1 has {len(long)} tokens, longer than the context of {len(long) - 1}$"
    ):
        pack([short, long], len(long) - 1, tok.pad_token_id)
    with pytest.raises(ValueError, match="longer than the context of 10"):
        pad_to_batch(ss, tok.pad_token_id, length=10)


@pytest.mark.parametrize("side", ["left", "right"])
def test_pad_to_batch(tok, side):
    ss = samples(tok)
    batch = pad_to_batch(ss, tok.pad_token_id, side=side)
    longest = max(len(s) for s in ss)
    assert batch.input_ids.shape == (len(ss), longest) and batch.rows == [[k] for k in range(len(ss))]
    for k, s in enumerate(ss):
        row, start, n = batch.offsets[k]
        assert row == k and start == (longest - n if side == "left" else 0)
        assert torch.equal(batch.input_ids[k, start : start + n], s.input_ids)
        assert torch.equal(batch.position_ids[k, start : start + n], torch.arange(n))
