"""Neural-network pieces shared by the tokenizer and the unified model."""

from hydra_x.nn.attention import MODES, spatiotemporal_attention, step_mask
from hydra_x.nn.layers import Attention, Block, TokenLayout, init_weights
from hydra_x.nn.rope import RopeTable, apply_rope, rope_table

__all__ = [
    "MODES",
    "Attention",
    "Block",
    "RopeTable",
    "TokenLayout",
    "apply_rope",
    "init_weights",
    "rope_table",
    "spatiotemporal_attention",
    "step_mask",
]
