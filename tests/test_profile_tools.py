"""benchmarks/profile_train.py: idle GPU time is charged to the host region that launched the next work."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from profile_train import annotate_step_regions, idle_gaps  # noqa: E402

from hydra_x.train.ema import EMA  # noqa: E402


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


def test_step_regions_are_restored_after_profiling():
    update = EMA.update
    with annotate_step_regions():
        assert EMA.update is not update
        model = torch.nn.Linear(2, 2)
        EMA(model, 0.5).update(model)  # the wrapper calls through
    assert EMA.update is update
