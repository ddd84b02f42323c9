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
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from hydra_x.train import tokenizer as loop


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

    # Device side: torch.profiler over steps 20-30 of the loop (the optimizer's step marks a step).
    original_step = torch.optim.AdamW.step
    state = {"n": 0, "prof": None}

    def step_hook(self, *a, **k):
        state["n"] += 1
        if state["n"] == 20 and torch.cuda.is_available():
            state["prof"] = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            state["prof"].__enter__()
        result = original_step(self, *a, **k)
        if state["n"] == 30 and state["prof"] is not None:
            torch.cuda.synchronize()
            state["prof"].__exit__(None, None, None)
        return result

    torch.optim.AdamW.step = step_hook
    profiler = cProfile.Profile()
    profiler.enable()
    loop.train(cfg)
    profiler.disable()
    torch.optim.AdamW.step = original_step

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        if "samples_per_s" in r:
            keys = ("step", "samples_per_s", "tokens_per_s", "mfu", "data_wait_fraction", "loss/total")
            print({k: r.get(k) for k in keys})
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.rows)
    print(text.getvalue()[-9000:])
    if state["prof"] is not None:
        averages = state["prof"].key_averages()
        table = averages.table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=50)
        print(table)


if __name__ == "__main__":
    main()
