"""benchmarks/unified_flops.py: each part of the model is counted once, and the LLM's part is what its linear layers
cost at every position of the packed rows."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from hydra_x.train.unified.build import build_model
from hydra_x.train.unified.recipes import tiny

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from unified_flops import count_task  # noqa: E402


def test_the_llm_part_is_its_linear_layers_at_every_position_and_no_part_is_counted_twice():
    cfg = tiny()
    torch.manual_seed(0)
    model = build_model(cfg)
    n, tokens, positions, total, parts = count_task(model, cfg, "image_gen", 4)
    assert n == 4 and 0 < tokens <= positions
    linear = sum(m.weight.numel() for m in model.llm.model.modules() if isinstance(m, torch.nn.Linear))
    assert parts["LLM"] == 2 * linear * positions  # a matrix product of (rows, in) by (in, out): 2 * in * out a row
    assert parts["other"] >= 0 and min(parts["Gen-ViT"], parts["Sem-ViT"], parts["flow head"]) > 0
    # the backward of what trains costs twice its forward; the Gen-ViT is frozen, so the step costs less than 3x
    forward = sum(parts.values())
    assert abs(3 * forward - 2 * parts["Gen-ViT"] - total) < 0.05 * total
