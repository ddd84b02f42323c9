"""The unified model on 1 and on N GPUs: the same step, a checkpoint that moves between them, and the speed-up.

    python benchmarks/unified_multi_gpu.py --gpus 2                       # on a machine with 2 GPUs
    python benchmarks/unified_multi_gpu.py --gpus 2 --device cpu --steps 3 --resume-step 2 --no-throughput  # gloo

Equality: the `tiny` recipe on the shapes world (examples of every task, mixed) with the same global batch,
run once on 1 process (FSDP2 on a one-process group, so both runs share the mixed-precision policy), again on
1 process (the noise floor), on N processes (FSDP2: each LLM layer a unit, the tokenizer in the root), and
the N-process checkpoint of --resume-step resumed on 1 process. Each example's draws depend on its global
index and the losses are means over every process's tokens, so the N-process step is the 1-process step.

Throughput (GPUs): the training step of an LLM of Qwen2.5-1.5B's shape (random weights) with the `so400m`
tokenizer at 256^2, the same examples per GPU on 1 and on N GPUs; scaling efficiency = N-GPU samples/s over
N x 1-GPU samples/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tokenizer_multi_gpu import losses, relative, resume_elsewhere, run_training, tiny_run_args

MODULE = "hydra_x.train.unified"
GLOBAL_EXAMPLES = 8
KEYS = ("loss/text", "loss/flow", "grad_norm")


def tiny_args(
    out: Path, device: str, steps: int, ckpt_every: int, precision: str, processes: int, extra: tuple[str, ...] = ()
) -> list[str]:
    if GLOBAL_EXAMPLES % processes:
        raise ValueError(f"{GLOBAL_EXAMPLES} examples per step must split into {processes} processes")
    return [
        *tiny_run_args(out, device, steps, ckpt_every, precision),
        "model.image_size=32",
        "data.image_size=32",
        "data.clip_frames=5",
        "data.num_workers=0",
        f"data.examples_per_step={GLOBAL_EXAMPLES // processes}",
        *extra,
    ]


def big_args(out: Path, steps: int, processes: int, examples: int, llm: Path) -> list[str]:
    return [
        "--config",
        "tiny",
        f"out_dir={out}",
        "device=cuda",
        "precision=bf16",
        f"steps={steps}",
        f"log_every={steps // 2}",
        "eval_every=0",
        "ckpt_every=1000000",
        "model=hydra-x-1.5b",
        f"model.llm={llm}",
        "stage=2",
        "lr_scale=1",
        "max_length=2048",
        "data.image_size=256",
        "data.num_workers=8",
        f"data.examples_per_step={examples}",
        'data.task_ratios={"image_caption": 1, "image_sft": 1, "image_gen": 2}',
        f"fsdp={'true' if processes > 1 else 'false'}",
    ]


def compare(
    root: Path, device: str, gpus: int, steps: int, resume_step: int, precision: str, extra: tuple[str, ...] = ()
) -> dict:
    """``extra``: more overrides of every run."""
    one, again, many, moved = (root / f"{run}-{precision}" for run in ("one", "again", "many", "moved"))

    def args(out: Path, processes: int) -> list[str]:
        return tiny_args(out, device, steps, resume_step, precision, processes, extra)

    for out in (one, again):
        run_training([*args(out, 1), "fsdp=true"], 1, module=MODULE)
    run_training(args(many, gpus), gpus, module=MODULE)
    resume_elsewhere(many, resume_step, moved)
    run_training(args(moved, 1), 1, module=MODULE)
    runs = {
        name: {k: losses(path, k) for k in KEYS}
        for name, path in (("one", one), ("again", again), ("many", many), ("moved", moved))
    }

    def worst(a: str, b: str, key: str) -> float:
        x, y = runs[a][key], runs[b][key]
        return max(relative(x[s], y[s]) for s in x if s in y)

    meta = json.loads((many / "checkpoints" / f"step_{resume_step:08d}" / "meta.json").read_text())
    return {
        "precision": precision,
        "runs": runs,
        "checkpoint_world_size": meta["world_size"],
        "rel_step1_grad_norm": relative(runs["many"]["grad_norm"][1], runs["one"]["grad_norm"][1]),
        **{
            f"max_rel_{a}_vs_{b}/{k}": worst(a, b, k)
            for a, b in (("many", "one"), ("again", "one"), ("moved", "one"), ("moved", "many"))
            for k in KEYS[:2]
        },
    }


def throughput(root: Path, gpus: int, steps: int, examples: int) -> dict:
    from unified_speed import llm_folder

    llm = llm_folder(root, None)
    speed = {}
    for n in (1, gpus):
        out = root / f"speed-{n}"
        run_training(big_args(out, steps, n, examples, llm), n, module=MODULE, timeout=1200)
        last = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "samples_per_s" in r]
        speed[n] = last[-1]
    return {
        "samples_per_s": {n: r["samples_per_s"] for n, r in speed.items()},
        "mfu": {n: r.get("mfu") for n, r in speed.items()},
        "scaling_efficiency": speed[gpus]["samples_per_s"] / (gpus * speed[1]["samples_per_s"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--resume-step", type=int, default=10)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--speed-steps", type=int, default=20)
    parser.add_argument("--examples-per-gpu", type=int, default=24)
    parser.add_argument("--json")
    args = parser.parse_args()
    if not 0 < args.resume_step < args.steps:
        parser.error("--resume-step must lie strictly between 0 and --steps")
    results: dict = {"equality": []}
    with tempfile.TemporaryDirectory(prefix="hydra_x_unified_multi_gpu_") as tmp:
        for precision in args.precisions.split(","):
            results["equality"].append(
                compare(Path(tmp), args.device, args.gpus, args.steps, args.resume_step, precision)
            )
        if not args.no_throughput and args.device == "cuda":
            results["throughput"] = throughput(Path(tmp), args.gpus, args.speed_steps, args.examples_per_gpu)
    n, k = args.gpus, args.resume_step
    print(f"\n## tiny on the shapes world, global batch {GLOBAL_EXAMPLES} examples: 1 vs {n} {args.device} processes")
    print(
        f"| precision | step-1 grad norm, rel. diff | loss | {n} vs 1 | 1 vs 1 again (noise floor) | "
        f"{n}-process step-{k} checkpoint resumed on 1: vs 1 | vs {n} |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in results["equality"]:
        for key in KEYS[:2]:
            cells = [
                r[f"max_rel_{a}_vs_{b}/{key}"]
                for a, b in (("many", "one"), ("again", "one"), ("moved", "one"), ("moved", "many"))
            ]
            print(
                f"| {r['precision']} | {r['rel_step1_grad_norm']:.1e} | {key} | "
                + " | ".join(f"{c:.1e}" for c in cells)
                + " |"
            )
    if "throughput" in results:
        t = results["throughput"]
        print(f"\n## Qwen2.5-1.5B-shaped LLM + so400m at 256^2, {args.examples_per_gpu} examples per GPU")
        print("| GPUs | samples/s | MFU |\n|---:|---:|---:|")
        for g, s in t["samples_per_s"].items():
            print(f"| {g} | {s:.1f} | {100 * (t['mfu'][g] or 0):.1f}% |")
        print(f"scaling efficiency {100 * t['scaling_efficiency']:.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
