"""Presets as Python: one module per model family."""

from hydra_x.configs.tokenizer import TOKENIZER_PRESETS, tokenizer_config

__all__ = ["TOKENIZER_PRESETS", "tokenizer_config"]
