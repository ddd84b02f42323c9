"""Where a unified training step's FLOPs go: per task, per example, per part of the model; counted, not timed.

    python benchmarks/unified_flops.py                          # the `small` recipe's shapes, every task
    python benchmarks/unified_flops.py --examples 8 --tasks image_gen video_gen --llm PATH_OR_HUB_ID
    python benchmarks/unified_flops.py --size 64 --llm ~/.cache/hydra_x/llm/smollm2-135m --chat-template llm chatml

What a step costs in FLOPs decides how much GPU work an example is, and so how many examples a step can hold before the
GPU, not the host, sets its time (the `small` recipe's steps on one H200 are bound by the host: about 5% MFU at 64 px
once attention is counted as FlexAttention computes it; docs/benchmarks.md). This builds the `small` recipe at its real
widths (the `small` tokenizer, an LLM of SmolLM2-135M's shape with random weights and the `tiny` text tokenizer unless
``--llm`` names a checkpoint; random weights do not change a FLOP count, the text tokenizer does) and, for each task
alone, draws one step of ``--examples`` examples from the shapes world, packs them as training does, and counts the
FLOPs of its forward, losses and backward with PyTorch's FlopCounterMode (matrix products; elementwise work is not
counted, as in every MFU figure, and neither is the CPU's attention, for which PyTorch has no formula: within one
example's block of 40-350 tokens, which is all that FlexAttention computes, it is a few percent of the linear layers').
The examples are packed into rows of 512 tokens, and the count is taken per example without the last row's padding (the
linear layers cost per position).

It prints, per task, the tokens and GFLOP (forward and backward) per example and each part's share of the
forward, and the mixture's average under the recipe's task ratios (or ``--ratios TASK=W ...``): one table for each
chat template asked (``--chat-template``; default: the recipe's).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from hydra_x.data.mixture import UnifiedDataLoader
from hydra_x.train.unified.batch import build_batch
from hydra_x.train.unified.build import build_model
from hydra_x.train.unified.objective import unified_loss
from hydra_x.train.unified.recipes import small
from hydra_x.unified.llm import save_tiny_llm, smollm2_135m_shape
from hydra_x.unified.text_tokenizer import CHAT_TEMPLATES

# Parts of HydraX: the modules whose FlopCounterMode keys hold their whole subtree's FLOPs, forward and backward
# (a parent's key, HydraX's own for one, can hold its forward alone). The rest of the step's total (the bottleneck,
# the losses' autograd functions) is "other".
PARTS = {
    "Gen-ViT": ("tokenizer.gen_vit",),
    "Sem-ViT": ("tokenizer.sem_vit",),
    "projector": ("projector", "time_embed"),
    "LLM": ("llm.model",),
    "LM head": ("llm.lm_head",),
    "flow head": ("flow_head",),
}
COLUMNS = (*PARTS, "other")


def part_counts(counter: FlopCounterMode) -> dict[str, int]:
    """FLOPs per part of the model, and "other" for the rest of the counted total."""
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    parts = {part: sum(counts.get(f"HydraX.{m}", 0) for m in modules) for part, modules in PARTS.items()}
    parts["other"] = counter.get_total_flops() - sum(parts.values())
    return parts


def count_task(model, cfg, task: str, examples: int) -> tuple[int, int, int, int, dict[str, int]]:
    """(examples, tokens, positions, FLOPs of forward and backward, forward FLOPs per part) of one step of ``task``
    alone. Positions count the rows' padding too, which the LLM runs like any token. The parts are the forward's:
    the backward's attribution to modules is not reliable (a module's key can take its neighbour's gradients)."""
    data = cfg.data
    data.task_ratios, data.examples_per_step, data.num_workers = {task: 1.0}, examples, 0
    item = next(iter(UnifiedDataLoader(data)))
    packed, visuals, _ = build_batch(model, item.examples, cfg, 0, 0)
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as forward:
        loss = unified_loss(model(packed, visuals), cfg.loss, torch.device("cpu")).total
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    total = forward.get_total_flops() + backward.get_total_flops()
    return len(item.examples), int(packed.valid.sum()), packed.valid.numel(), total, part_counts(forward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--examples",
        type=int,
        default=16,
        help="examples of each task counted (default 16)",
    )
    parser.add_argument("--tasks", nargs="*", default=None, help="tasks to count (default: the recipe's)")
    parser.add_argument("--ratios", nargs="*", default=[], metavar="TASK=W", help="task weights of the average")
    parser.add_argument("--llm", default=None, help="an LLM checkpoint (default: SmolLM2-135M's shape, random)")
    parser.add_argument("--size", type=int, default=None, help="image size (default: the recipe's, 128)")
    parser.add_argument("--clip-frames", type=int, default=None, help="frames of a clip (default: the recipe's, 17)")
    parser.add_argument(
        "--chat-template", nargs="*", choices=CHAT_TEMPLATES, default=None, help="templates (default: the recipe's)"
    )
    args = parser.parse_args()
    for template in args.chat_template or [small().model.chat_template]:
        print(f"\nchat template {template!r}:")
        count_recipe(args, template)


def count_recipe(args: argparse.Namespace, chat_template: str) -> None:
    """Count each task of the `small` recipe, as ``args`` set it, and print the table and the mixture's average."""
    cfg = small()
    ratios = dict(cfg.data.task_ratios)
    for spec in args.ratios:
        task, _, weight = spec.partition("=")
        ratios[task] = float(weight)
    tasks = args.tasks or [t for t, w in ratios.items() if w > 0]
    with tempfile.TemporaryDirectory() as tmp:
        llm = args.llm or str(save_tiny_llm(Path(tmp) / "llm", seed=0, config=smollm2_135m_shape()))
        data = cfg.data
        data.image_size, data.clip_frames = args.size or data.image_size, args.clip_frames or data.clip_frames
        # the recipe's model with a fresh tokenizer, on the CPU's attention (FlexAttention has no CPU backward)
        cfg.model = cfg.model.replace(
            llm=llm,
            attention="sdpa",
            image_size=data.image_size,
            clip_frames=data.clip_frames,
            chat_template=chat_template,
        )
        cfg.tokenizer_init, cfg.latent_stats_samples = None, 0
        # Rows of 512 tokens, as many as the examples fill: a step's padding (at most part of one row of 2048 in
        # 20-odd) is not what is measured here, and a CPU runs 16 examples in rows of 512 in seconds.
        cfg.row_multiple, cfg.max_length = 1, 512
        torch.manual_seed(0)
        model = build_model(cfg)
        rows = {task: count_task(model, cfg, task, args.examples) for task in tasks}
    print(f"| task | examples | tokens/example | row fill | GFLOP/example | forward: {' | '.join(COLUMNS)} |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(COLUMNS))
    mean_flops = mean_tokens = weight_sum = 0.0
    for task, (n, tokens, positions, total, parts) in rows.items():
        # Per example without this count's padding: the layers that cost (linear ones) cost per position.
        per_example = total * tokens / positions / n
        shares = " | ".join(f"{100 * parts[p] / sum(parts.values()):.0f}%" for p in COLUMNS)
        print(f"| {task} | {n} | {tokens / n:.0f} | {tokens / positions:.0%} | {per_example / 1e9:.1f} | {shares} |")
        w = ratios.get(task, 0.0)
        mean_flops, mean_tokens, weight_sum = mean_flops + w * per_example, mean_tokens + w * tokens / n, weight_sum + w
    if weight_sum:
        ratio_text = ", ".join(f"{t} {w:g}" for t, w in ratios.items() if w and t in rows)
        print(f"\nthe mixture ({ratio_text}): {mean_tokens / weight_sum:.0f} tokens and ", end="")
        print(f"{mean_flops / weight_sum / 1e9:.1f} GFLOP an example")


if __name__ == "__main__":
    main()
