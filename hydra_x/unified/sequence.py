"""Chat-formatted interleaved text + visual sequences (their packing into rows: hydra_x.unified.packing).

A visual block is written ``[BEGIN] + steps * tokens_per_step placeholder positions + [END]``; the placeholders'
embeddings are replaced by projected visual tokens in the model, so their ids only have to be valid. Text goes
through the tokenizer's own chat template, so any LLM's conversation format is kept exactly as it was trained.

Targets are shifted here, per sample (``targets[p]`` is the token position ``p`` predicts), so packing samples
side by side can never make a sample's last token predict the next sample's first one. Only what the assistant
writes is predicted: its content and the token(s) that close its turn.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

IGNORE = -100

VisualKind = Literal["image", "video"]
VisualRole = Literal["understand", "generate"]

BEGIN_IMAGE, END_IMAGE = "<|begin_of_image|>", "<|end_of_image|>"
BEGIN_VIDEO, END_VIDEO = "<|begin_of_video|>", "<|end_of_video|>"
VISUAL_SPECIAL_TOKENS = (BEGIN_IMAGE, END_IMAGE, BEGIN_VIDEO, END_VIDEO)
PLACEHOLDERS: dict[str, VisualKind] = {"<image>": "image", "<video>": "video"}
_PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
_MARKERS: dict[VisualKind, str] = {"image": BEGIN_IMAGE + END_IMAGE, "video": BEGIN_VIDEO + END_VIDEO}


@dataclass(frozen=True)
class VisualSpec:
    """One visual block: ``steps`` latent steps of ``tokens_per_step`` tokens (an image has one step)."""

    kind: VisualKind
    steps: int
    tokens_per_step: int
    role: VisualRole = "understand"

    def __post_init__(self) -> None:
        if self.kind not in ("image", "video"):
            raise ValueError(f"visual kind must be 'image' or 'video', not {self.kind!r}")
        if self.role not in ("understand", "generate"):
            raise ValueError(f"visual role must be 'understand' or 'generate', not {self.role!r}")
        if self.steps < 1 or self.tokens_per_step < 1:
            raise ValueError(f"a visual block needs steps >= 1 and tokens_per_step >= 1, got {self}")
        if self.kind == "image" and self.steps != 1:
            raise ValueError(f"an image is one latent step, got steps={self.steps}")

    @property
    def length(self) -> int:
        return self.steps * self.tokens_per_step

    @classmethod
    def image(cls, tokens: int, role: VisualRole = "understand") -> VisualSpec:
        return cls("image", 1, tokens, role)

    @classmethod
    def video(cls, steps: int, tokens_per_step: int, role: VisualRole = "understand") -> VisualSpec:
        return cls("video", steps, tokens_per_step, role)


@dataclass(frozen=True)
class Block:
    """A visual block inside a sample: positions ``start .. start + spec.length``; BEGIN at start - 1, END at end."""

    spec: VisualSpec
    start: int

    @property
    def end(self) -> int:
        return self.start + self.spec.length


@dataclass
class SampleSequence:
    """One sample (a conversation) as per-position tensors."""

    input_ids: torch.Tensor  # (L,) long
    targets: torch.Tensor  # (L,) long: the token this position predicts, or IGNORE
    block: torch.Tensor  # (L,) long: index into ``blocks``, -1 for text (BEGIN / END are text)
    step: torch.Tensor  # (L,) long: latent step inside the block, -1 for text
    blocks: list[Block] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def prefix(self, length: int) -> SampleSequence:
        """The first ``length`` positions, e.g. a generation prompt up to its block's BEGIN
        (``generation_sample(...).prefix(blocks[0].start)``); a block may not be cut."""
        if any(b.start < length < b.end for b in self.blocks):
            raise ValueError(f"prefix({length}) would cut a visual block")
        targets = self.targets[:length].clone()
        targets[-1:] = IGNORE
        return SampleSequence(
            self.input_ids[:length],
            targets,
            self.block[:length],
            self.step[:length],
            [b for b in self.blocks if b.end <= length],
        )


@dataclass(frozen=True)
class VisualTokenIds:
    begin_image: int
    end_image: int
    begin_video: int
    end_video: int

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> VisualTokenIds:
        """The ids of the four visual special tokens; each must encode as one token, never split."""
        ids = []
        for token in VISUAL_SPECIAL_TOKENS:
            encoded = tokenizer.encode(token, add_special_tokens=False)
            if len(encoded) != 1:
                raise ValueError(
                    f"tokenizer has no special token {token!r} (it encodes to {len(encoded)} tokens); "
                    "add the visual tokens first (add_visual_tokens) and resize the LLM's embeddings"
                )
            ids.append(encoded[0])
        return cls(*ids)

    def begin(self, kind: VisualKind) -> int:
        return self.begin_image if kind == "image" else self.begin_video

    def end(self, kind: VisualKind) -> int:
        return self.end_image if kind == "image" else self.end_video


# Per tokenizer: (its vocabulary size, its VisualTokenIds). build_sequence runs for every example of every step;
# looking the four tokens up each time cost about as much as a chat-template render.
_VISUAL_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def visual_token_ids(tokenizer: PreTrainedTokenizerBase) -> VisualTokenIds:
    """``VisualTokenIds.from_tokenizer``, looked up again only when the vocabulary's size changes (added tokens)."""
    size = len(tokenizer)
    known = _VISUAL_IDS.get(tokenizer)
    if known is None or known[0] != size:
        known = (size, VisualTokenIds.from_tokenizer(tokenizer))
        _VISUAL_IDS[tokenizer] = known
    return known[1]


def add_visual_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Register the BEGIN/END tokens as special tokens; returns how many were new (resize embeddings then)."""
    from tokenizers import AddedToken

    return tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in VISUAL_SPECIAL_TOKENS], special_tokens=True
    )


def _placeholders(messages: list[dict[str, str]], visuals: list[VisualSpec]) -> list[VisualKind]:
    """Kinds of the placeholders in message order, checked against ``visuals``."""
    kinds: list[VisualKind] = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a str, got {type(content).__name__}")
        if m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"message {i}: role must be system, user or assistant, not {m.get('role')!r}")
        for token in VISUAL_SPECIAL_TOKENS:
            if token in content:
                raise ValueError(f"message {i}: content holds the special token {token!r}; write <image> / <video>")
        kinds += [PLACEHOLDERS[p] for p in _PLACEHOLDER_RE.findall(content)]
    if len(kinds) != len(visuals):
        n_img, n_vid = kinds.count("image"), kinds.count("video")
        raise ValueError(
            f"messages have {len(kinds)} visual placeholders ({n_img} <image>, {n_vid} <video>) "
            f"but {len(visuals)} visuals were given"
        )
    for i, (k, v) in enumerate(zip(kinds, visuals)):
        if k != v.kind:
            raise ValueError(f"placeholder {i} is <{k}> but visuals[{i}] is a {v.kind}")
    return kinds


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, expected str")
    return text


def _assistant_spans(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], full: str, full_has_prompt: bool
) -> list[tuple[int, int]]:
    """Character spans of what each assistant turn writes: from the end of the generation prompt that precedes it
    to the end of its turn, trailing whitespace dropped (the ``\\n`` after ``<|im_end|>`` is template layout)."""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        if i == 0:
            raise ValueError("message 0 is an assistant turn: its generation prompt cannot be rendered")
        prompt = _render(tokenizer, messages[:i], True)
        # The last turn of a render without a generation prompt is the whole render (the common case): not again.
        last = i == len(messages) - 1 and not full_has_prompt
        turn = full if last else _render(tokenizer, messages[: i + 1], False)
        if not (full.startswith(prompt) and full.startswith(turn) and turn.startswith(prompt)):
            raise ValueError(
                f"the chat template does not render conversations prefix by prefix (assistant message {i}: the render "
                "of the messages before it, or up to it, is not a prefix of the whole render), so its assistant "
                "tokens cannot be found; use a template without history-dependent rewriting"
            )
        spans.append((len(prompt), len(turn.rstrip())))
    return spans


def build_sequence(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, str]],
    visuals: list[VisualSpec] | tuple[VisualSpec, ...] = (),
    *,
    add_generation_prompt: bool = False,
    placeholder_id: int | None = None,
) -> SampleSequence:
    """A conversation whose ``<image>`` / ``<video>`` placeholders take ``visuals`` in order, as one sample.

    Each placeholder is rendered as its BEGIN and END special tokens, so the whole text is tokenized in one call
    (special tokens are never merged with their neighbours, so this equals tokenizing the pieces between them);
    the block's ``steps * tokens_per_step`` positions are then inserted between BEGIN and END with
    ``placeholder_id`` (default: the pad token). ``add_generation_prompt`` ends the sequence where the assistant's
    reply starts (inference).
    """
    if not tokenizer.is_fast:
        raise ValueError("build_sequence needs a fast tokenizer (it maps assistant spans through offset mappings)")
    visuals = list(visuals)
    _placeholders(messages, visuals)
    ids_of = visual_token_ids(tokenizer)
    if placeholder_id is None:
        placeholder_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.unk_token_id
        if placeholder_id is None:
            raise ValueError("the tokenizer has no pad or unk token: pass placeholder_id")

    marked = [
        {**m, "content": _PLACEHOLDER_RE.sub(lambda p: _MARKERS[PLACEHOLDERS[p.group(0)]], m["content"])}
        for m in messages
    ]
    full = _render(tokenizer, marked, add_generation_prompt)
    spans = _assistant_spans(tokenizer, marked, full, add_generation_prompt)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    text_ids: list[int] = enc["input_ids"]
    learn = [any(a <= s < b for a, b in spans) for s, _ in enc["offset_mapping"]]

    ids: list[int] = []
    labels: list[bool] = []
    block: list[int] = []
    step: list[int] = []
    blocks: list[Block] = []
    begins = {ids_of.begin_image: "image", ids_of.begin_video: "video"}
    pending: VisualSpec | None = None
    for tok, lab in zip(text_ids, learn):
        if pending is not None:
            if tok != ids_of.end(pending.kind):
                raise ValueError(f"the chat template split the markers of visual block {len(blocks)}")
            blocks.append(Block(pending, len(ids)))
            n = pending.tokens_per_step
            ids += [placeholder_id] * pending.length
            labels += [False] * pending.length
            block += [len(blocks) - 1] * pending.length
            step += [s for s in range(pending.steps) for _ in range(n)]
            pending = None
        ids.append(tok)
        labels.append(lab)
        block.append(-1)
        step.append(-1)
        if tok in begins:
            if len(blocks) >= len(visuals) or begins[tok] != visuals[len(blocks)].kind:
                raise ValueError("the rendered conversation has visual markers that do not match the visuals")
            pending = visuals[len(blocks)]
    if pending is not None or len(blocks) != len(visuals):
        raise ValueError(f"the chat template rendered {len(blocks)} of the {len(visuals)} visual placeholders")

    targets = [IGNORE] * len(ids)
    for p in range(len(ids) - 1):
        if labels[p + 1] and block[p] < 0:
            targets[p] = ids[p + 1]
    long = dict(dtype=torch.long)
    return SampleSequence(
        torch.tensor(ids, **long),
        torch.tensor(targets, **long),
        torch.tensor(block, **long),
        torch.tensor(step, **long),
        blocks,
    )


def understanding_sample(
    tokenizer: PreTrainedTokenizerBase,
    visual: VisualSpec,
    question: str,
    answer: str | None = None,
    *,
    system: str | None = None,
) -> SampleSequence:
    """``user: <image>\\nquestion``, ``assistant: answer``; without an answer, the inference prompt."""
    head = [{"role": "system", "content": system}] if system is not None else []
    placeholder = f"<{visual.kind}>"
    messages = [*head, {"role": "user", "content": f"{placeholder}\n{question}"}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return build_sequence(
        tokenizer, messages, [replace(visual, role="understand")], add_generation_prompt=answer is None
    )


def generation_sample(
    tokenizer: PreTrainedTokenizerBase, visual: VisualSpec, caption: str, *, system: str | None = None
) -> SampleSequence:
    """``user: caption``, ``assistant: <image>`` (role generate). An empty caption is the unconditional (CFG) branch."""
    head = [{"role": "system", "content": system}] if system is not None else []
    messages = [*head, {"role": "user", "content": caption}, {"role": "assistant", "content": f"<{visual.kind}>"}]
    return build_sequence(tokenizer, messages, [replace(visual, role="generate")])
