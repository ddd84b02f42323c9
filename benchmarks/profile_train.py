"""Where a training run's time goes: the real loop under cProfile (host side) and torch.profiler (device side).

    python benchmarks/profile_train.py --config small --steps 150 device=cuda data.num_workers=14

Prints the speed of the run (metrics.jsonl), the host functions with the most own time, the device ops with
the most CUDA time over a few steps after warm-up, and where the GPU sat idle in those steps, charged to the
part of the step whose launch ended each idle gap: the loop names its parts (data, noise, forward, losses,
teacher, backward, optimizer, discriminator, ema) with ``hydra_x.train.engine.region``; "loop" is the rest.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import gzip
import io
import json
import pstats
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from hydra_x.train.tokenizer import train
from hydra_x.train.tokenizer.__main__ import parse_config


def idle_gaps(trace: dict, min_gap_us: float = 50.0, top: int = 15) -> str:
    """Where the GPU waits: idle gaps between device events, charged to the host region that launched the
    work ending each gap (the innermost ``step/*`` annotation around its launch; "loop" when none).

    A gap charged to ``forward`` means the GPU ran dry while the host was still launching the forward's
    kernels: the host, not the GPU, set the pace there.
    """
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    device = sorted(
        (e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")), key=lambda e: e["ts"]
    )
    launches = {
        e["args"]["correlation"]: e
        for e in events
        if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {})
    }
    regions = sorted(
        (e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith("step/")),
        key=lambda e: e["ts"],
    )
    starts = [r["ts"] for r in regions]

    def region_at(ts: float) -> str:
        inside = [r for r in regions[: bisect.bisect_right(starts, ts)] if r["ts"] + r["dur"] >= ts]
        return min(inside, key=lambda r: r["dur"])["name"][5:] if inside else "loop"

    by_region: dict[str, float] = defaultdict(float)
    gaps = []
    busy_until = device[0]["ts"] + device[0]["dur"] if device else 0.0
    for e in device[1:]:
        gap = e["ts"] - busy_until
        if gap >= min_gap_us:
            launch = launches.get(e.get("args", {}).get("correlation"))
            where = region_at(launch["ts"]) if launch else "?"
            by_region[where] += gap
            gaps.append((gap, where, e["name"][:70]))
        busy_until = max(busy_until, e["ts"] + e["dur"])
    span = (busy_until - device[0]["ts"]) if device else 0.0
    total = sum(by_region.values())
    lines = [f"GPU idle in gaps >= {min_gap_us:.0f} us: {total / 1e3:.1f} ms of {span / 1e3:.1f} ms"]
    lines += [f"  {where:<10} {us / 1e3:8.1f} ms" for where, us in sorted(by_region.items(), key=lambda kv: -kv[1])]
    lines.append(f"largest {top} gaps (ms, host region at the next launch, next kernel):")
    lines += [f"  {gap / 1e3:7.2f}  {where:<10} {name}" for gap, where, name in sorted(gaps, reverse=True)[:top]]
    return "\n".join(lines)


class ProfileOptimizerSteps:
    """torch.profiler over optimizer steps ``first``..``last`` of whatever trains inside the ``with`` block.

    The AdamW step marks a training step, so the real loop is profiled without changing it.
    """

    def __init__(self, first: int = 20, last: int = 30, trace: str | Path | None = None) -> None:
        self.first, self.last = first, last
        self.trace = Path(trace) if trace else None  # a gzipped Chrome trace of the profiled steps
        self.prof = None
        self._original = None
        self._wall = 0.0

    def __enter__(self) -> ProfileOptimizerSteps:
        self._original = original = torch.optim.AdamW.step
        count = {"n": 0}

        def step_hook(optimizer, *a, **k):
            count["n"] += 1
            if count["n"] == self.first and torch.cuda.is_available():
                torch.cuda.synchronize()
                self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                self.prof.__enter__()
                self._wall = time.perf_counter()
            result = original(optimizer, *a, **k)
            if count["n"] == self.last and self.prof is not None:
                torch.cuda.synchronize()
                self._wall = time.perf_counter() - self._wall
                self.prof.__exit__(None, None, None)
            return result

        torch.optim.AdamW.step = step_hook
        return self

    def __exit__(self, *exc) -> None:
        torch.optim.AdamW.step = self._original

    def table(self, rows: int = 30) -> str:
        """Device ops by total CUDA time over the profiled steps ('' without a GPU)."""
        if self.prof is None:
            return ""
        averages = self.prof.key_averages()
        # Kernels' own time summed over the window against its wall time: how busy the GPU was (a low figure
        # means the host, not the GPU, sets the pace).
        kernels = (e for e in self.prof.events() if e.device_type == DeviceType.CUDA and not e.is_user_annotation)
        busy_s = sum(e.self_device_time_total for e in kernels) / 1e6
        summary = (
            f"{self.last - self.first} steps in {self._wall * 1e3:.0f} ms wall; GPU busy {busy_s * 1e3:.0f} ms "
            f"({100 * busy_s / self._wall:.0f}%)\n"
        )
        table = averages.table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=50)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.json"
            self.prof.export_chrome_trace(str(path))
            text = path.read_text()
        gaps = idle_gaps(json.loads(text))
        if self.trace is not None:
            with gzip.open(self.trace, "wt") as f:
                f.write(text)
        return f"{summary}{gaps}\n{table}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="small")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="hydra_x_profile_"))
    cfg = parse_config(
        ["--config", args.config, f"steps={args.steps}", f"out_dir={out}", "eval_every=0", "ckpt_every=1000000"]
        + ["heldout_images=0", "heldout_clips=0", f"log_every={max(args.steps // 3, 1)}", *args.overrides]
    )

    device_profile = ProfileOptimizerSteps(first=20, last=30)
    profiler = cProfile.Profile()
    with device_profile:
        profiler.enable()
        train(cfg)
        profiler.disable()

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        if "samples_per_s" in r:
            keys = ("step", "samples_per_s", "tokens_per_s", "mfu", "data_wait_fraction", "loss/total")
            print({k: r.get(k) for k in keys})
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.rows)
    print(text.getvalue()[-9000:])
    print(device_profile.table(args.rows))


if __name__ == "__main__":
    main()
