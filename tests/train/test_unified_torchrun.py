"""The unified model under torchrun (2 processes, gloo, CPU, FSDP2): the same steps as 1 process, and a
2-process checkpoint that resumes on 1, with a flow-head attention layer that joins part-way. The runs are those
of benchmarks/unified_multi_gpu.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from unified_multi_gpu import compare  # noqa: E402


@pytest.mark.slow
def test_two_processes_take_the_step_of_one_and_their_checkpoint_resumes_on_one(tmp_path):
    # The flow head's attention layer joins at the third step: held out (no gradient) in a sharded step, then
    # taking part, across the move from 2 processes to 1 as well.
    extra = ("model.head_attention_layers=1", "head_attention_from_step=2")
    r = compare(tmp_path, "cpu", gpus=2, steps=3, resume_step=2, precision="fp32", extra=extra)
    assert r["checkpoint_world_size"] == 2
    runs = r["runs"]
    assert sorted(runs["many"]["loss/text"]) == [1, 2, 3] and sorted(runs["moved"]["loss/text"]) == [3]
    # Global means: a sum across ranks where a mean belongs would double the step-1 gradient norm.
    assert r["rel_step1_grad_norm"] < 1e-5  # 1e-7 measured
    for key in ("loss/text", "loss/flow"):
        assert r[f"max_rel_many_vs_one/{key}"] < 1e-5, (key, runs["many"][key], runs["one"][key])
        assert r[f"max_rel_moved_vs_one/{key}"] < 1e-5, key
