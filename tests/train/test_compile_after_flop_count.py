"""compile=true must still compile after the training loop's FLOP-counted first step.

The loop counts one step's FLOPs under FlopCounterMode (for MFU); code that torch.compile first meets under
such a dispatch mode is marked to run eagerly for good, which silently turned compile=true into eager
training. The loop calls forget_compiled_code() after that step; this test shows both the failure and the fix.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters
from torch.utils.flop_counter import FlopCounterMode

from hydra_x.tokenizer import HydraXTokenizer
from hydra_x.train.mfu import forget_compiled_code
from hydra_x.train.parallel import BLOCK_RECOMPILE_LIMIT, parallelize
from hydra_x.train.tokenizer.build import tokenizer_blocks


def compiled_frames_after_a_counted_step(reset: bool) -> int:
    torch.compiler.reset()
    counters.clear()
    model = HydraXTokenizer.from_preset("tiny", seed=0, depth=2)
    model.validate_inputs = False
    parallelize(model, tokenizer_blocks(model), fsdp=False, param_dtype=None, compile_blocks=True)
    x = torch.rand(2, 3, 32, 32) * 2 - 1

    def step() -> None:
        model(x, sample=True, semantic=False).x_rec.square().mean().backward()

    with FlopCounterMode(display=False) as flops:
        step()
    assert flops.get_total_flops() > 0
    if reset:
        forget_compiled_code()
    step()
    return counters["frames"]["ok"]


@pytest.mark.slow
def test_blocks_compile_after_the_flop_counted_step() -> None:
    try:
        assert compiled_frames_after_a_counted_step(reset=False) == 0  # the trap: eager for good
        assert compiled_frames_after_a_counted_step(reset=True) > 0
        # One graph per token layout (train and eval of images and clips): the default limit of 8 is too low.
        assert torch._dynamo.config.recompile_limit >= BLOCK_RECOMPILE_LIMIT
    finally:
        torch.compiler.reset()


@pytest.mark.slow
def test_blocks_compile_one_static_graph_per_token_layout() -> None:
    """Static shapes: every layout gets its own graph (automatic dynamic shapes would reuse one symbolic graph
    from the third layout on, with symbolic-size arithmetic on the host at every kernel launch)."""
    torch.compiler.reset()
    counters.clear()
    try:
        model = HydraXTokenizer.from_preset("tiny", seed=0, depth=2)
        model.validate_inputs = False
        parallelize(model, tokenizer_blocks(model), fsdp=False, param_dtype=None, compile_blocks=True)
        graphs = []
        for size in (32, 48, 64):  # three token layouts
            with torch.no_grad():
                model(torch.rand(1, 3, size, size) * 2 - 1, sample=False, semantic=False)
            graphs.append(counters["stats"]["unique_graphs"])
        assert graphs[0] > 0 and graphs[2] - graphs[1] == graphs[1] - graphs[0] == graphs[0]
    finally:
        torch.compiler.reset()
