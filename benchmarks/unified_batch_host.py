"""How much of building a unified training batch stays in the training process, with the rows packed and the flow
draws (times, noises) made there or in the data workers (``StepPacker``, what training does)? Host milliseconds per
step of the `small` recipe's examples (SmolLM2's text tokenizer where converted, else the `tiny` LLM's), median of
``--repeats``; and how long one data worker takes to render, pack and draw a whole step (one thread, as a worker
runs), hence the examples a second that each worker can feed.

    python benchmarks/unified_batch_host.py [--examples 96 256] [--size 64 --frames 9 --edit-weight 4]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from tokenizer_speed import time_ms

from hydra_x.data.mixture import UnifiedDataLoader
from hydra_x.tokenizer import tokenizer_config
from hydra_x.train.unified.batch import StepPacker, build_batch
from hydra_x.train.unified.recipes import small
from hydra_x.unified.config import unified_config
from hydra_x.unified.model import HydraX
from hydra_x.unified.smollm2 import is_complete, smollm2_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, nargs="+", default=[96, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=128, help="picture side (the recipe's 128)")
    parser.add_argument("--frames", type=int, default=17, help="frames of a clip (the recipe's 17)")
    parser.add_argument("--edit-weight", type=float, help="the edits' task weight (default: the recipe's)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a data worker runs (hydra_x.data.workers.one_thread)
    tokenizer = tokenizer_config("small").replace(width=64, heads=2, mlp_dim=128)  # only its latent shapes matter
    llm = "smollm2-135m" if is_complete(smollm2_folder()) else "tiny"
    shape = dict(image_size=args.size, clip_frames=args.frames)
    model = HydraX.from_config(unified_config("small", llm=llm, tokenizer=tokenizer, attention="sdpa", **shape), seed=0)
    print(f"Host ms per step (text tokenizer of `{llm}`, CPU, {args.size} px, {args.frames}-frame clips)")
    print("| examples | training process, rows and draws made there | made in the workers | one worker's step | "
          "examples/s a worker |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|")
    for n in args.examples:
        cfg = small()
        cfg.data.num_workers, cfg.data.examples_per_step = 0, n
        cfg.data.image_size, cfg.data.clip_frames = args.size, args.frames
        if args.edit_weight is not None:
            cfg.data.task_ratios["edit"] = args.edit_weight
        packer = StepPacker(model.text_tokenizer, model.config, cfg, rank=0)
        steps = iter(UnifiedDataLoader(cfg.data, prepare=packer))
        item = next(steps)
        produce = time_ms(partial(next, steps), torch.device("cpu"), args.repeats, warmup=1)
        build = partial(build_batch, model, item.examples, cfg, 0, 0)
        cpu = torch.device("cpu")
        here = time_ms(build, cpu, args.repeats, warmup=1)
        there = time_ms(partial(build, prepared=item.prepared), cpu, args.repeats, warmup=1)
        print(f"| {n} | {here:.2f} | {there:.2f} | {produce:.1f} | {n / produce * 1e3:.0f} |")


if __name__ == "__main__":
    main()
