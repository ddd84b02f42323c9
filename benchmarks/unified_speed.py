"""Speed of the unified model on one GPU: training MFU and the latency of generating one image.

    python benchmarks/unified_speed.py                 # Qwen2.5-1.5B-shaped LLM + so400m tokenizer, 256^2
    python benchmarks/unified_speed.py --cases latency --llm-layers 2 --tokenizer tiny --device cpu --steps 4

Random weights throughout (the benchmark measures cost, not quality): an LLM of Qwen2.5-1.5B's shape (hidden
1536, 28 layers, 12 heads, 2 KV heads, MLP 8960) built from a config and saved to a temporary folder (with the
project's small offline text tokenizer: the vocabulary only changes the size of the embedding table), and the
`so400m` tokenizer.

- training: the real loop (``hydra_x.train.unified.train``) on the shapes world at 256^2, every step mixing
  understanding (captions, questions) and generation examples, packed into rows; MFU = FLOPs counted on the
  first step over the bf16 matmul ceiling measured in the same run.
- latency: one 256^2 image, 50 Euler steps with classifier-free guidance (both branches in one batch): the
  plain loop (the whole prompt again at every step, eager), the KV-cached loop, and the KV-cached loop with
  each step replayed as a CUDA graph; median of --repeats after --warmup, CUDA events.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hydra_x.unified.llm import TinyLLMConfig, save_tiny_llm

QWEN_1_5B = TinyLLMConfig(
    hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12, num_kv_heads=2, tie_word_embeddings=True
)


def llm_folder(root: Path, layers: int | None) -> Path:
    config = QWEN_1_5B if layers is None else TinyLLMConfig(**{**QWEN_1_5B.__dict__, "num_layers": layers})
    return save_tiny_llm(root / "llm", seed=0, config=config)


def time_ms(fn, device: torch.device, repeats: int, warmup: int) -> tuple[float, object]:
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            out = fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def latency(args, llm: Path, device: torch.device) -> list[dict]:
    from hydra_x.unified.config import unified_config
    from hydra_x.unified.model import HydraX
    from hydra_x.unified.sampling import generate_latents

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = unified_config("hydra-x-1.5b", llm=str(llm)).replace(tokenizer=_tokenizer_config(args.tokenizer))
    model = HydraX.from_config(config, seed=0, device=device, dtype=dtype).eval()
    with torch.no_grad():  # a non-zero head (adaLN-Zero starts it at 0): every step does real work
        for p in model.flow_head.parameters():
            p.normal_(0, 0.02)
    prompt = ["two red circles left of a blue square"]
    common = dict(height=args.size, width=args.size, steps=args.steps, guidance=4.0, seed=0)
    variants = {
        "plain loop (no cache, eager)": dict(use_cache=False),
        "KV-cached prompt": dict(use_cache=True),
        "KV-cached prompt + CUDA graph": dict(use_cache=True, cuda_graph=True),
        # last: compiling changes the model for every later call
        "KV-cached prompt + compiled blocks + CUDA graph": dict(use_cache=True, cuda_graph=True, compiled=True),
    }
    rows, outputs = [], {}
    for name, options in variants.items():
        if options.get("cuda_graph") and device.type != "cuda":
            continue
        if options.pop("compiled", False):
            compile_blocks(model)
        try:
            ms, z = time_ms(
                lambda o=options: generate_latents(model, prompt, **common, **o), device, args.repeats, args.warmup
            )
        except RuntimeError as err:  # e.g. a capture that the installed transformers' code cannot be graphed in
            print(f"{name}: failed: {' '.join(str(err).split())[:300]}")
            continue
        outputs[name] = z
        rows.append({"variant": name, "ms": ms})
    reference = outputs["plain loop (no cache, eager)"].float()
    for row in rows:
        row["max_abs_diff_vs_plain"] = float((outputs[row["variant"]].float() - reference).abs().max())
        row["speedup"] = rows[0]["ms"] / row["ms"]
    return rows


def compile_blocks(model) -> None:
    """torch.compile the transformer blocks of a sampling step (the LLM's layers and the Sem-ViT's) with static
    shapes, as training's ``compile=true`` does: fused element-wise work, fewer kernels for the graph to replay."""
    from hydra_x.train.parallel import allow_block_recompiles
    from hydra_x.train.unified.build import model_blocks

    allow_block_recompiles()
    for blocks in [*model_blocks(model), model.tokenizer.sem_vit.blocks]:
        for block in blocks:
            block.compile(dynamic=False)


def training(args, llm: Path, root: Path) -> dict:
    """The real loop for --train-steps steps; the figures of the last logging window (the first holds compilation
    and the FLOP count)."""
    from hydra_x.data.mixture import UnifiedDataConfig, UnifiedSource
    from hydra_x.train.unified import train
    from hydra_x.train.unified.recipes import tiny
    from hydra_x.unified.config import unified_config

    cfg = tiny()
    cfg.model = unified_config("hydra-x-1.5b", llm=str(llm), image_size=args.size, attention=args.attention).replace(
        tokenizer=_tokenizer_config(args.tokenizer)
    )
    cfg.stage, cfg.lr_scale = 2, 1.0  # everything trains
    # Understanding (captions, questions) and generation in every step, packed together.
    ratios = {"image_caption": 1.0, "image_sft": 1.0, "image_gen": 2.0}
    cfg.data = UnifiedDataConfig(
        sources=(UnifiedSource("shapes"),),
        task_ratios=ratios,
        image_size=args.size,
        examples_per_step=args.examples,
        num_workers=args.workers,
    )
    cfg.max_length = args.max_length
    cfg.steps, cfg.log_every, cfg.eval_every, cfg.ckpt_every = args.train_steps, args.train_steps // 2, 0, 10**9
    cfg.device = args.device
    cfg.precision = "bf16" if args.device == "cuda" else "fp32"
    cfg.compile, cfg.activation_checkpointing = args.compile, args.activation_checkpointing
    cfg.out_dir = str(root / "train")
    train(cfg)
    rows = [json.loads(line) for line in (root / "train" / "metrics.jsonl").read_text().splitlines()]
    last = next(r for r in rows if "samples_per_s" in r and r["step"] == args.train_steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
    return {**last, "peak_gib": peak, "examples_per_step": args.examples, "max_length": args.max_length}


def _tokenizer_config(name: str):
    from hydra_x.tokenizer import tokenizer_config

    return tokenizer_config(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cases", nargs="+", default=["training", "latency"], choices=["training", "latency"])
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--examples", type=int, default=24, help="examples per training step")
    parser.add_argument("--max-length", type=int, default=2048, help="tokens per packed row")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="compile the LLM's layers")
    parser.add_argument("--attention", choices=("sdpa", "flex"), default="sdpa", help="the LLM's attention in training")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--tokenizer", default="so400m", help="tokenizer preset (so400m: the paper's)")
    parser.add_argument("--llm-layers", type=int, help="fewer LLM layers (CPU smoke runs)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="write every number to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    root = Path(tempfile.mkdtemp(prefix="hydra_x_unified_speed_"))
    try:
        llm = llm_folder(root, args.llm_layers)
        results = {}
        if "training" in args.cases:
            r = results["training"] = training(args, llm, root)
            print(
                f"\n## Training: {args.examples} examples per step at {args.size}^2, rows of {args.max_length} tokens"
            )
            print("| samples/s | tokens/s | MFU | matmul ceiling TFLOP/s | peak GiB | text loss | flow loss |")
            print("|---:|---:|---:|---:|---:|---:|---:|")
            mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
            losses = [r.get(f"loss/{k}", float("nan")) for k in ("text", "flow")]
            print(
                f"| {r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} | {mfu} | {r.get('mfu_peak_tflops', 0):.0f} | "
                f"{r['peak_gib']:.1f} | {losses[0]:.3f} | {losses[1]:.3f} |"
            )
        if "latency" in args.cases:
            rows = latency(args, llm, device)
            results["latency"] = rows
            print(f"\n## One {args.size}^2 image, {args.steps} steps with CFG (batch 2), {args.tokenizer} tokenizer")
            print("| variant | ms | vs plain | max abs diff vs plain |\n|---|---:|---:|---:|")
            for r in rows:
                print(f"| {r['variant']} | {r['ms']:.1f} | {r['speedup']:.2f}x | {r['max_abs_diff_vs_plain']:.2e} |")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
