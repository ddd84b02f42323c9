"""The HYDRA-X tokenizer: Gen-ViT -> Generation-Semantic Bottleneck -> Sem-ViT, with a pixel decoder."""

from hydra_x.tokenizer.bottleneck import DiagonalGaussian
from hydra_x.tokenizer.config import TokenizerConfig
from hydra_x.tokenizer.model import HydraXTokenizer, PairEncoding, TokenizerOutput

__all__ = ["DiagonalGaussian", "HydraXTokenizer", "PairEncoding", "TokenizerConfig", "TokenizerOutput"]
