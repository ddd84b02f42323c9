"""hydra-x: an open, trainable implementation of HYDRA-X (and its predecessor HYDRA)."""

from hydra_x._version import __version__
from hydra_x.tokenizer import HydraXTokenizer, TokenizerConfig

__all__ = ["HydraXTokenizer", "TokenizerConfig", "__version__"]
