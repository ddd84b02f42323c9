"""Real multi-process training: torchrun with 2 processes (gloo, CPU), FSDP2, DCP checkpoints.

The runs are those of benchmarks/tokenizer_multi_gpu.py (which makes the same comparison on GPUs).
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from tokenizer_multi_gpu import losses, resume_elsewhere, run_training, tiny_args  # noqa: E402


@pytest.mark.slow
def test_two_processes_match_one_and_a_two_process_checkpoint_resumes_on_one(tmp_path):
    two, one, moved = tmp_path / "two", tmp_path / "one", tmp_path / "moved"
    # The same global batch: 2 ranks x (4 images | 1 clip) against 1 rank x (8 images | 2 clips).
    run_training(tiny_args(two, "cpu", steps=4, ckpt_every=2, precision="fp32", processes=2), processes=2)
    run_training(tiny_args(one, "cpu", steps=4, ckpt_every=2, precision="fp32", processes=1), processes=1)
    a, b = losses(two), losses(one)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    # The gradient averaged across ranks equals the 1-process gradient. Adam is nearly scale-invariant, so a sum
    # where a mean belongs moves the losses only through clipping and Adam's epsilon; it doubles the norm.
    assert losses(two, "grad_norm")[1] == pytest.approx(losses(one, "grad_norm")[1], rel=1e-5)
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-4), (step, a[step], b[step])
    checkpoints = sorted(p.name for p in (two / "checkpoints").iterdir())
    assert checkpoints == ["step_00000002", "step_00000004"]
    assert json.loads((two / "checkpoints" / "step_00000002" / "meta.json").read_text())["world_size"] == 2
    assert (two / "export" / "model.safetensors").is_file()

    # Resume the 2-process checkpoint of step 2 on 1 process: steps 3 and 4 follow the 1-process run.
    resume_elsewhere(two, 2, moved)
    run_training(tiny_args(moved, "cpu", steps=4, ckpt_every=2, precision="fp32", processes=1), processes=1)
    c = losses(moved)
    assert sorted(c) == [3, 4]
    for step in c:
        assert c[step] == pytest.approx(b[step], rel=1e-4), (step, c[step], b[step])
