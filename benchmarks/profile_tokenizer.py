"""Where the time of one tokenizer encode + decode goes: torch.profiler's top CUDA ops.

python benchmarks/profile_tokenizer.py --preset so400m --shape 1,3,17,512,512 [--overrides attention_impl=masked]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from hydra_x.config import parse_value
from hydra_x.tokenizer.model import HydraXTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="so400m")
    parser.add_argument("--shape", default="1,3,17,512,512", help="input shape, comma-separated")
    parser.add_argument("--overrides", nargs="*", default=[], help="config fields as key=value")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()

    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.overrides)}
    model = HydraXTokenizer.from_preset(args.preset, device="cuda", dtype=torch.bfloat16, seed=0, **overrides)
    model.eval().validate_inputs = False
    x = torch.rand(*(int(s) for s in args.shape.split(",")), device="cuda", dtype=torch.bfloat16) * 2 - 1
    video = x.ndim == 5
    with torch.inference_mode():
        for _ in range(3):
            model.decode(model.encode(x), video=video)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                model.decode(model.encode(x), video=video)
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
