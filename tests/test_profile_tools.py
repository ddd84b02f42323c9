"""benchmarks/profile_train.py: idle GPU time is charged to the host region that launched the next work."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from profile_train import idle_gaps  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from hydra_x.train.tokenizer import train  # noqa: E402
from hydra_x.train.tokenizer.recipes import tiny  # noqa: E402


def event(cat: str, name: str, ts: float, dur: float, correlation: int | None = None) -> dict:
    e = {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur}
    if correlation is not None:
        e["args"] = {"correlation": correlation}
    return e


def test_idle_gaps_are_charged_to_the_innermost_region_at_the_next_launch():
    trace = {
        "traceEvents": [
            event("user_annotation", "step/losses", 1000, 1000),
            event("user_annotation", "step/teacher", 1200, 300),  # inside losses
            event("cuda_runtime", "cudaLaunchKernel", 10, 5, 1),
            event("cuda_runtime", "cudaLaunchKernel", 900, 5, 2),  # outside every region
            event("cuda_runtime", "cudaLaunchKernel", 1300, 5, 3),
            event("kernel", "first", 20, 100, 1),  # busy 20..120
            event("kernel", "second", 910, 100, 2),  # idle 790 us before it
            event("kernel", "third", 1310, 100, 3),  # idle 300 us before it
            event("kernel", "overlapping", 1320, 10, 4),  # no gap
        ]
    }
    report = idle_gaps(trace, min_gap_us=50)
    assert "1.1 ms of 1.4 ms" in report
    lines = report.splitlines()
    assert lines[1].split() == ["loop", "0.8", "ms"] and lines[2].split() == ["teacher", "0.3", "ms"]
    assert lines[4].split() == ["0.79", "loop", "second"]


def test_the_training_loop_names_the_parts_of_its_step_in_traces(tmp_path):
    """The regions idle_gaps charges to come from the loop itself (hydra_x.train.engine.region), not a patch."""
    cfg = tiny()
    cfg.out_dir, cfg.steps, cfg.eval_every, cfg.ckpt_every, cfg.log_every = str(tmp_path), 2, 0, 100, 1
    cfg.data.image_size, cfg.data.clip_frames, cfg.data.image_batch_size, cfg.data.video_batch_size = 32, 5, 2, 1
    cfg.loss.gan, cfg.loss.gan_start = 0.1, 0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(cfg)
    names = {e.name for e in prof.events() if e.name.startswith("step/")}
    parts = ("data", "noise", "forward", "losses", "backward", "optimizer", "discriminator", "ema")
    assert names == {f"step/{p}" for p in parts}


def three_operators(x):
    return ((x + 1) * 2).sum()


def test_forward_callers_count_the_outer_operators_each_line_issues(capsys):
    """benchmarks/unified_step_ops.py --callers: each line's outer operators inside the forward's range, no more."""
    import torch
    from torch.profiler import record_function
    from unified_step_ops import print_forward_callers

    x = torch.ones(3)
    with profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
        with record_function("step/forward"):
            three_operators(x)
        three_operators(x)  # outside the forward: not counted
    host = list(prof.events())
    forward = next(e.time_range for e in host if e.name == "step/forward")
    print_forward_callers(host, forward, 3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "of 3;" in lines[0]
    assert lines[1].split()[0] == "3" and lines[1].endswith("three_operators")
