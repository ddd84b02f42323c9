"""MFU counts the attention a packed row's mask lets through, not the dense product over the whole row: the share of
visible pairs (hydra_x.unified.masks.visible_pairs, proven against the dense mask in tests/unified/test_masks.py),
reported by the unified loop during the FLOP-counted step, and applied to the attention operators of the count."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hydra_x.train.engine import Engine
from hydra_x.train.mfu import useful_flops
from hydra_x.train.unified import loop as loop_module
from hydra_x.train.unified.build import build_run
from hydra_x.train.unified.loop import train_step
from hydra_x.train.unified.recipes import tiny

aten = torch.ops.aten


def test_only_the_attention_is_counted_at_the_visible_share():
    counts = {
        aten.mm.default: 1000,
        aten._scaled_dot_product_efficient_attention.default: 400,
        aten._scaled_dot_product_efficient_attention_backward.default: 800,
    }
    assert useful_flops(counts, None) == 2200
    assert useful_flops(counts, 0.25) == 1000 + 0.25 * 1200
    assert useful_flops(counts, 1.0) == 2200
    assert useful_flops({aten.mm.default: 10}, 0.1) == 10  # no attention: nothing to take out
    with pytest.raises(ValueError, match="visible_share"):
        useful_flops(counts, 1.5)


def tiny_run(tmp_path, device: str):
    cfg = tiny()
    cfg.out_dir, cfg.device, cfg.steps, cfg.latent_stats_samples = str(tmp_path), device, 2, 0
    cfg.precision = "bf16" if device == "cuda" else "fp32"
    cfg.data.image_size, cfg.data.clip_frames, cfg.data.examples_per_step = 32, 5, 6
    cfg.model = cfg.model.replace(image_size=32)
    engine = Engine(cfg)
    run = build_run(cfg, engine)
    engine.start(cfg.to_dict(), "mfu test")
    return engine, run


def test_the_loop_reports_its_attention_pairs_only_in_the_counted_step(tmp_path, monkeypatch):
    engine, run = tiny_run(tmp_path, "cpu")
    seen, original = [], loop_module.visible_pairs

    def recording(batch, video_attention):
        seen.append(original(batch, video_attention))
        return seen[-1]

    monkeypatch.setattr(loop_module, "visible_pairs", recording)
    batches = run.batches
    train_step(run, batches, 0)
    assert seen == [] and engine._attention_pairs == [0, 0]
    engine.counting_flops = True
    train_step(run, batches, 1)
    assert len(seen) == run.cfg.grad_accum
    visible, pairs = engine._attention_pairs
    assert (visible, pairs) == tuple(map(sum, zip(*seen, strict=True)))
    assert 0 < visible < pairs / 2  # several examples a row, each seeing itself: most pairs are hidden


@pytest.mark.gpu
def test_mfu_of_a_counted_cuda_step_leaves_out_the_hidden_attention(tmp_path):
    engine, run = tiny_run(tmp_path, "cuda")
    with engine.timed_step(), FlopCounterMode(display=False) as dense:  # both count the same step
        train_step(run, run.batches, 0)
    visible, pairs = engine._attention_pairs
    assert 0 < visible < pairs
    expected = useful_flops(dense.get_flop_counts()["Global"], visible / pairs)
    assert engine.flops_per_step == pytest.approx(expected, rel=1e-6)
    assert engine.flops_per_step < dense.get_total_flops()


@pytest.mark.parametrize("mfu", [True, False])
def test_mfu_false_leaves_the_first_cuda_step_uncounted(tmp_path, mfu):
    # Counting runs the step eagerly under FlopCounterMode; a run that only fills the compile caches skips it.
    # The branch is the device's type alone, so a CPU engine told it is on CUDA shows it without a GPU.
    cfg = tiny()
    cfg.out_dir, cfg.device, cfg.mfu = str(tmp_path), "cpu", mfu
    engine = Engine(cfg)
    engine.device = torch.device("cuda")
    with engine.timed_step():
        assert engine.counting_flops == mfu
        torch.ones(8, 8) @ torch.ones(8, 8)
    assert engine.flops_per_step == (2 * 8**3 if mfu else None)
