"""Where a training run's time goes: the real loop under cProfile (host side) and torch.profiler (device side).

    python benchmarks/profile_train.py --config small --steps 150 device=cuda data.num_workers=14

Prints the speed of the run (metrics.jsonl), the host functions with the most own time, and the device
ops with the most CUDA time over a few steps after warm-up.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import tempfile
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from hydra_x.train import tokenizer as loop


class ProfileOptimizerSteps:
    """torch.profiler over optimizer steps ``first``..``last`` of whatever trains inside the ``with`` block.

    The AdamW step marks a training step, so the real loop is profiled without changing it.
    """

    def __init__(self, first: int = 20, last: int = 30) -> None:
        self.first, self.last = first, last
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
        return summary + averages.table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="small")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="hydra_x_profile_"))
    cfg = loop.parse_config(
        ["--config", args.config, f"steps={args.steps}", f"out_dir={out}", "eval_every=0", "ckpt_every=1000000"]
        + ["heldout_images=0", "heldout_clips=0", f"log_every={max(args.steps // 3, 1)}", *args.overrides]
    )

    device_profile = ProfileOptimizerSteps(first=20, last=30)
    profiler = cProfile.Profile()
    with device_profile:
        profiler.enable()
        loop.train(cfg)
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
