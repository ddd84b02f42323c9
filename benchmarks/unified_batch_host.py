"""How much of building a unified training batch stays in the training process, with the rows packed there or in
the data workers (``StepPacker``, what training does)? Host milliseconds per step of the `small` recipe's examples
(SmolLM2's text tokenizer where converted, else the `tiny` LLM's), median of ``--repeats``.

    python benchmarks/unified_batch_host.py [--examples 96 256]
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
    args = parser.parse_args()
    tokenizer = tokenizer_config("small").replace(width=64, heads=2, mlp_dim=128)  # only its latent shapes matter
    llm = "smollm2-135m" if is_complete(smollm2_folder()) else "tiny"
    model = HydraX.from_config(unified_config("small", llm=llm, tokenizer=tokenizer, attention="sdpa"), seed=0)
    print(f"Host ms per step in the training process (text tokenizer of `{llm}`, CPU)")
    print("| examples | rows packed in the training process | packed in the data workers |")
    print("|---:|---:|---:|")
    for n in args.examples:
        cfg = small()
        cfg.data.num_workers, cfg.data.examples_per_step = 0, n
        packer = StepPacker(model.text_tokenizer, model.config.tokenizer, cfg, rank=0)
        item = next(iter(UnifiedDataLoader(cfg.data, prepare=packer)))
        build = partial(build_batch, model, item.examples, cfg, 0, 0)
        cpu = torch.device("cpu")
        here = time_ms(build, cpu, args.repeats, warmup=1)
        there = time_ms(partial(build, prepared=item.prepared), cpu, args.repeats, warmup=1)
        print(f"| {n} | {here:.1f} | {there:.1f} |")


if __name__ == "__main__":
    main()
