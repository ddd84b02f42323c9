"""A tiny text tokenizer built locally, with no download: byte-level BPE trained on a built-in English corpus.

It exists so that the unified model can be tested and demonstrated offline with the ``tiny`` LLM. Its text
pipeline (NFC normalisation, Qwen2's pre-tokenisation regex, byte-level BPE), special tokens and ChatML chat
template are Qwen2.5's (the paper's LLM), for two reasons: code written against the tiny pair runs unchanged on
the real one, and transformers 5 reloads the tokenizer of a saved ``qwen2`` model as ``Qwen2Tokenizer``, which
rebuilds that pipeline around the saved vocabulary and merges, so any other pipeline would change on reload.
Byte-level means any (NFC) text, in any script, round-trips exactly; the merges (learned from the corpus below)
only make English shorter. Training takes milliseconds and is deterministic: the BPE trainer breaks ties between
equally frequent pairs by the pair itself, never by hash order.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # ends every turn, so it is the end-of-sequence of a chat model
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)

# Qwen2's pre-tokenisation (transformers.models.qwen2.tokenization_qwen2.PRETOKENIZE_REGEX): letters, single digits,
# punctuation runs, newlines and spaces are split apart before the byte-level BPE.
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5's template without its default system prompt: <|im_start|>role\ncontent<|im_end|>\n per message.
# Given a system turn, Qwen2.5's and SmolLM2's own templates write the same string; without one they add theirs.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A few hundred words of plain English (with the vocabulary of image and video captions) to learn merges from.
CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "A photograph of a red car parked on a quiet street in the morning.",
    "A video of a dog running across a green field while the sun sets behind the trees.",
    "The capital of France is Paris. The capital of Italy is Rome. The capital of Japan is Tokyo.",
    "What is in this image? The image shows a small cat sleeping on a blue sofa.",
    "Describe the video. A man rides a bicycle along the river and waves at the camera.",
    "Generate an image of a mountain lake at sunrise, with mist over the water.",
    "The model reads text and visual tokens in one sequence and predicts the next token.",
    "There are three apples and two oranges on the wooden table near the window.",
    "A close-up of a flower with yellow petals and a bee collecting pollen.",
    "Children are playing football in the park on a sunny afternoon.",
    "The train arrives at the station at seven in the evening, and the platform is crowded.",
    "An aerial view of a city at night, with lights along the roads and the bridges.",
    "Please answer the question in one sentence. Thank you for your help.",
    "The weather is cold and cloudy today, but it will be warmer tomorrow.",
    "She opened the book, read the first page, and smiled at the picture of an old house.",
    "A bowl of fresh fruit: bananas, grapes, strawberries and a green apple.",
    "The painting shows a boat on the sea under a dark sky full of stars.",
    "Hello! How are you? I am fine, thank you. What would you like to do today?",
    "The number of people in the room is twelve; four of them are sitting and eight are standing.",
    "In the first frame the ball is on the left; in the last frame it has rolled to the right.",
    "A white bird flies over the waves and lands on a rock near the shore.",
    "The kitchen has a large window, a white table and four chairs.",
    "Write a short story about a robot that learns to paint pictures of the ocean.",
)


def build_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """The tiny tokenizer: byte-level BPE of at most ``vocab_size`` entries (256 bytes + 3 specials + merges).

    The corpus is small, so the vocabulary may stop short of ``vocab_size``: its length is ``len(tokenizer)``.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} cannot hold the 256 byte tokens and {len(SPECIAL_TOKENS)} specials")
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            # add_prefix_space=False: "Paris" and " Paris" stay different tokens, as in Qwen2.5.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),  # ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, seen in the corpus or not
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False,  # byte-level decoding is exact; "clean up" would alter it
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


# A unified model's chat format: "llm", its LLM tokenizer's own template as it was trained; "chatml", the plain
# ChatML above, which writes a system turn only where a conversation has one. ChatML LLMs' own templates (SmolLM2,
# Qwen2.5) add a default system prompt to every conversation without one: SmolLM2's turn is 21 tokens, the same
# on every example, and 37% of a 64-px image generation example of the shapes world (56 tokens).
CHAT_TEMPLATES = ("llm", "chatml")


def use_chat_template(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedTokenizerBase:
    """Set ``tokenizer``'s chat template to ``name`` (one of ``CHAT_TEMPLATES``), in place; "llm" leaves it be.

    "chatml" is refused for a tokenizer whose vocabulary lacks ChatML's turn markers (a Llama or Gemma tokenizer):
    its turns would be written as plain text, which no such LLM was trained on.
    """
    if name not in CHAT_TEMPLATES:
        raise ValueError(f"chat_template must be one of {CHAT_TEMPLATES}, got {name!r}")
    if name == "chatml":
        vocab = tokenizer.get_vocab()
        missing = [t for t in (IM_START, IM_END) if t not in vocab]
        if missing:
            raise ValueError(
                f"chat_template 'chatml' needs the LLM tokenizer's ChatML turn markers, and it has no {missing}: "
                "use chat_template 'llm' (the tokenizer's own template) for this LLM"
            )
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, where: str) -> PreTrainedTokenizerBase:
    """Give ``tokenizer`` a pad token where it names none, in place: its end-of-sequence token (else unknown).

    Llama-family tokenizers ship without one, and so does SmolLM2 read from GGUF by some transformers versions
    (5.17 does, 5.24 names ``<|im_end|>``). Packing and batched sampling fill rows with the pad id, and every
    pad position is masked out and carries no loss, so which token it is does not change any result.
    """
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"{where}: the tokenizer names no pad, end-of-sequence or unknown token to pad rows with")
        tokenizer.pad_token = fallback
    return tokenizer
