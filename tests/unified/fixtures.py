"""A tiny offline chat tokenizer (byte-level BPE, ChatML) and a tiny Llama for the unified-model tests."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from hydra_x.unified.sequence import add_visual_tokens

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Llama-3 layout: a BOS written by the template, headers, content stripped, <|eot_id|> closing every turn.
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{ m['content'] | trim }}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
# Qwen-2.5 habit: a default system prompt when the conversation has none.
DEFAULT_SYSTEM = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{% endif %}"
    + CHATML
)
# SmolLM2-135M-Instruct's template as its GGUF file ships it (a ChatML template that adds a default system turn).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMOLLM2_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
CORPUS = [
    "system user assistant You are a helpful assistant.",
    "Describe the image. What is in this picture? A red cat sits on a blue mat.",
    "The quick brown fox jumps over the lazy dog. Two dogs play in the park at sunset.",
    "a photo of a mountain lake with trees; a video of waves on the shore, slowly moving.",
    "How many apples are on the table? There are three apples and one banana.",
]


@functools.lru_cache(maxsize=1)
def _base() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer(template: str = CHATML, visual_tokens: bool = True) -> PreTrainedTokenizerFast:
    """A fresh tokenizer (so a test may change it), by default with the visual special tokens registered."""
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_base()),
        bos_token="<|begin_of_text|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = template
    if visual_tokens:
        add_visual_tokens(tok)
    return tok


@functools.lru_cache(maxsize=2)
def tiny_llama(attn: str = "sdpa") -> LlamaForCausalLM:
    """Hidden 64, 2 layers, 4 heads (2 KV heads), fp32, eval, fixed weights; shared, so never modify it."""
    from transformers import LlamaConfig, LlamaForCausalLM  # the modelling code is slow to import

    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer()),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        attn_implementation=attn,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return model.eval()
