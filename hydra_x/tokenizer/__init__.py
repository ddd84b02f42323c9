"""The HYDRA-X tokenizer: Gen-ViT -> Generation-Semantic Bottleneck -> Sem-ViT, with a pixel decoder."""

from hydra_x.tokenizer.bottleneck import DiagonalGaussian
from hydra_x.tokenizer.config import TOKENIZER_PRESETS, TokenizerConfig, tokenizer_config
from hydra_x.tokenizer.model import HydraXTokenizer, PairEncoding, TokenizerOutput

__all__ = [
    "TOKENIZER_PRESETS",
    "DiagonalGaussian",
    "HydraXTokenizer",
    "PairEncoding",
    "TokenizerConfig",
    "TokenizerOutput",
    "tokenizer_config",
]
