"""hydra-x: an open, trainable implementation of HYDRA-X (and its predecessor HYDRA)."""

__version__ = "0.1.0"

from hydra_x.tokenizer import HydraXTokenizer, TokenizerConfig  # noqa: E402

__all__ = ["HydraXTokenizer", "TokenizerConfig", "__version__"]
