"""How much host work does one unified training step issue? Operator counts per part of the step, on the CPU.

    python benchmarks/unified_step_ops.py                        # the `small` recipe's shapes, 32 and 96 examples
    python benchmarks/unified_step_ops.py --examples 16 64 --llm-layers 30

A step whose GPU is mostly idle is bound by the host: every eager operator costs Python and a kernel launch,
whatever the tensor sizes. This counts the operators of one step of the `small` recipe (128 px, 17-frame clips,
every shapes-world task, rows of 2048 tokens) with the same structure at toy widths: the `small` tokenizer's depth
and SmolLM2-135M's 30 layers, widths shrunk so that it runs on a laptop. Counts do not depend on widths, so they
say how the host's share of a GPU step grows with the number of examples. Printed per ``--examples``: the
outermost ATen operators of each part of ``train_step`` (data: next() of the loader, run here in the main
process; batch: build_batch; forward; backward; optimizer, whose per-parameter loop is the CPU's AdamW: CUDA
runs foreach), and the operators of the forward, losses and backward that read a value back to the host (each
a synchronisation on a GPU).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from hydra_x.tokenizer import tokenizer_config
from hydra_x.train.engine import Engine
from hydra_x.train.unified.build import build_run
from hydra_x.train.unified.loop import train_step
from hydra_x.train.unified.recipes import small
from hydra_x.unified.config import unified_config
from hydra_x.unified.llm import TinyLLMConfig, save_tiny_llm

PARTS = ("data", "batch", "forward", "backward", "optimizer")
# Operators that copy a value to the host or size an output by data: each waits for the GPU.
SYNCS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2", "aten::is_nonzero"}
ON_DEVICE = ("forward", "losses", "backward")  # the parts whose tensors live on the GPU in a GPU run


def count_step(examples: int, llm_layers: int, root: Path) -> dict[str, int]:
    llm = save_tiny_llm(root / f"llm-{llm_layers}", seed=0, config=TinyLLMConfig(num_layers=llm_layers))
    cfg = small()
    toy_tokenizer = tokenizer_config("small").replace(width=64, heads=2, mlp_dim=128)
    cfg.model = unified_config("small", llm=str(llm), tokenizer=toy_tokenizer)
    cfg.tokenizer_init, cfg.latent_stats_samples = None, 0
    cfg.device, cfg.precision, cfg.compile = "cpu", "fp32", False
    cfg.data.num_workers, cfg.data.examples_per_step = 0, examples
    cfg.steps, cfg.out_dir = 10, str(root / f"run-{examples}")
    engine = Engine(cfg)
    run = build_run(cfg, engine)
    engine.start(cfg.to_dict(), "operator count")
    batches = iter(run.loader)
    for step in range(2):  # lazily built state (optimizer moments, caches) out of the way
        train_step(run, batches, step)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(run, batches, 2)
    events = prof.events()
    spans = {e.name.removeprefix("step/"): e.time_range for e in events if e.name.startswith("step/")}
    counts: dict[str, int] = collections.Counter()
    for e in events:
        if not e.name.startswith("aten::"):
            continue
        part = next((p for p, r in spans.items() if r.start <= e.time_range.start <= r.end), None)
        if part is None:
            continue
        if e.name in SYNCS and part in ON_DEVICE:
            counts["syncs"] += 1
        outer = e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")
        if outer:
            counts[part] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, nargs="+", default=[32, 96], help="examples per step")
    parser.add_argument("--llm-layers", type=int, default=30, help="SmolLM2-135M has 30")
    args = parser.parse_args()
    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp(prefix="hydra_x_step_ops_"))
    rows = {n: count_step(n, args.llm_layers, root) for n in args.examples}
    print(f"\nOuter ATen operators of one `small` unified step (CPU, toy widths, {args.llm_layers} LLM layers)")
    print("| examples | " + " | ".join(PARTS) + " | total | host read-backs |\n|---:|" + "---:|" * (len(PARTS) + 2))
    for n, c in rows.items():
        total = sum(c[p] for p in PARTS)
        print(f"| {n} | " + " | ".join(str(c[p]) for p in PARTS) + f" | {total} | {c['syncs']} |")


if __name__ == "__main__":
    main()
