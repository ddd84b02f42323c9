"""The unified model's chat format (``UnifiedConfig.chat_template``): the LLM's own template, or plain ChatML that
adds no default system prompt, kept through training's packing, save and load."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hydra_x.unified.config import unified_config
from hydra_x.unified.llm import save_tiny_llm
from hydra_x.unified.model import HydraX
from hydra_x.unified.sequence import VisualSpec, build_sequence, generation_sample, understanding_sample
from hydra_x.unified.text_tokenizer import CHATML_TEMPLATE, use_chat_template
from tests.unified.fixtures import DEFAULT_SYSTEM, SMOLLM2_SYSTEM, SMOLLM2_TEMPLATE, tiny_tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "What is in the picture?"}, {"role": "assistant", "content": "A red circle."}],
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Why?"}],
]


def render(tok, messages, prompt: bool = False) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)


@pytest.mark.parametrize("template", [SMOLLM2_TEMPLATE, DEFAULT_SYSTEM], ids=["smollm2", "qwen-habit"])
@pytest.mark.parametrize("prompt", [False, True], ids=["training", "inference"])
def test_chatml_writes_the_llm_template_less_its_default_system_turn(template, prompt):
    own, plain = tiny_tokenizer(template), use_chat_template(tiny_tokenizer(template), "chatml")
    assert plain.chat_template == CHATML_TEMPLATE
    for messages in CONVERSATIONS:
        with_own, with_plain = render(own, messages, prompt), render(plain, messages, prompt)
        default = with_own[: len(with_own) - len(with_plain)]
        assert with_own.endswith(with_plain) and default.startswith("<|im_start|>system\n"), (with_own, with_plain)
        # a conversation that brings its own system turn is written the same by both
        given = [{"role": "system", "content": "Be brief."}, *messages]
        assert render(plain, given, prompt) == render(own, given, prompt)
    assert render(tiny_tokenizer(SMOLLM2_TEMPLATE), CONVERSATIONS[0]).startswith(SMOLLM2_SYSTEM)


def test_llm_keeps_the_tokenizer_s_own_template():
    tok = tiny_tokenizer(SMOLLM2_TEMPLATE)
    assert use_chat_template(tok, "llm") is tok and tok.chat_template == SMOLLM2_TEMPLATE


def test_chatml_is_refused_for_a_tokenizer_without_chatml_markers():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3}
    llama_like = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), eos_token="</s>", unk_token="<unk>"
    )
    llama_like.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match=r"'chatml' needs .*ChatML turn markers.*'<\|im_start\|>', '<\|im_end\|>'"):
        use_chat_template(llama_like, "chatml")
    assert llama_like.chat_template == "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # left as it was
    with pytest.raises(ValueError, match="chat_template must be one of"):
        use_chat_template(llama_like, "alpaca")
    with pytest.raises(ValueError, match="chat_template must be one of"):
        unified_config("tiny", chat_template="alpaca")


def test_the_small_preset_writes_plain_chatml_and_the_paper_presets_their_llm_s():
    assert unified_config("small").chat_template == "chatml"
    assert unified_config("tiny").chat_template == "llm"  # the tiny tokenizer's template is ChatML already
    assert unified_config("hydra-x-7b").chat_template == "llm"


@pytest.fixture(scope="module")
def smollm2_shaped_llm(tmp_path_factory) -> Path:
    """The tiny LLM saved with SmolLM2's chat template, as a converted SmolLM2 folder holds it."""
    folder = save_tiny_llm(tmp_path_factory.mktemp("llm") / "llm", seed=0)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = SMOLLM2_TEMPLATE
    tok.save_pretrained(folder)
    return folder


def sequences(model: HydraX) -> list[list[int]]:
    """A training example of generation and of understanding, and an inference prompt, as the model writes them."""
    tok, spec = model.text_tokenizer, VisualSpec.image(4)
    chat = [{"role": "user", "content": "<image>\nWhat colour is it?"}]
    return [
        generation_sample(tok, spec, "a red circle").input_ids.tolist(),
        understanding_sample(tok, spec, "What colour is it?", "red").input_ids.tolist(),
        build_sequence(tok, chat, [spec], add_generation_prompt=True).input_ids.tolist(),
    ]


def test_a_chatml_model_writes_every_sequence_without_the_default_turn_and_keeps_it_through_save_and_load(
    smollm2_shaped_llm, tmp_path
):
    own = HydraX.from_config(unified_config("tiny", llm=str(smollm2_shaped_llm)), seed=0)
    plain = HydraX.from_config(unified_config("tiny", llm=str(smollm2_shaped_llm), chat_template="chatml"), seed=0)
    system = own.text_tokenizer(SMOLLM2_SYSTEM, add_special_tokens=False).input_ids
    for with_own, with_plain in zip(sequences(own), sequences(plain), strict=True):
        assert with_own == system + with_plain  # every sequence shorter by the default turn, and otherwise the same
    # the data workers get the model's text tokenizer pickled, its template with it
    assert pickle.loads(pickle.dumps(plain.text_tokenizer)).chat_template == CHATML_TEMPLATE
    for model in (own, plain):
        loaded = HydraX.from_pretrained(model.save_pretrained(tmp_path / model.config.chat_template))
        assert loaded.config.chat_template == model.config.chat_template
        assert sequences(loaded) == sequences(model)
