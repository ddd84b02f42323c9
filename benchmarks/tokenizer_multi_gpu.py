"""1 GPU against N GPUs: the same tiny run gives matching losses, and an N-GPU checkpoint resumes on 1 GPU.

    python benchmarks/tokenizer_multi_gpu.py                      # 2 GPUs, fp32 and bf16, lr 1e-3 and 1e-4
    python benchmarks/tokenizer_multi_gpu.py --gpus 4 --steps 40 --resume-step 20 --precisions bf16 --lrs 1e-4
    python benchmarks/tokenizer_multi_gpu.py --device cpu --steps 4 --resume-step 2 --precisions fp32  # gloo

For each precision and learning rate, three runs of ``hydra_x.train.tokenizer --config tiny`` on the embedded
data, all with the same global batch (8 images or 2 clips a step; the GAN on from step 1, so the replicated
discriminator's gradient all-reduce is in the path):
- **1 GPU**: one process, FSDP2 on a one-process group (``fsdp=true``), so it has the same mixed-precision
  policy as the N-GPU run (bf16 compute weights, fp32 gradient reduction) and differs only in the split;
- **N GPUs**: torchrun with N processes, FSDP2, each rank a 1/N share of the batch;
- **1 GPU again**: the 1-GPU run repeated, the noise floor: on the CPU it is bitwise the same run; on GPUs,
  kernels that sum in a varying order (atomics) can make it differ from the first, and the N-GPU run cannot
  be expected to match the 1-GPU run better than the 1-GPU run matches itself;
- **resumed on 1**: the N-GPU checkpoint of ``--resume-step``, copied to a fresh run folder and resumed by one
  process in the default one-GPU mode (no FSDP: the sharded DCP state is loaded into plain tensors), for the
  remaining steps.
It prints the losses side by side, the first step's gradient norms (a wrong gradient average across ranks
shows there, even where Adam's scale invariance would hide it in the losses) and the largest relative
differences up to the resume step and over the whole run. In fp32 the runs differ only by the order of
floating-point sums (the split, the all-reduce); in bf16 also by where bf16 rounding happens (and the resumed
run uses autocast rather than FSDP2's bf16 weights). How far such rounding differences grow depends on the
training dynamics, not on the parallelism: at the tiny preset's learning rate (1e-3, chosen to learn fast in
a few hundred steps) they grow from 1e-7 to a few per cent within 25 steps (and to 1e-3 between two one-process
CPU runs that differ only in their thread count); at 1e-4 they stay small. Both are measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_IMAGES, GLOBAL_CLIPS = 8, 2


def tiny_run_args(out: Path, device: str, steps: int, ckpt_every: int, precision: str) -> list[str]:
    """The engine overrides both model families' tiny comparisons share: every step logged and kept, no evals."""
    return [
        "--config",
        "tiny",
        f"out_dir={out}",
        f"device={device}",
        f"precision={precision}",
        f"steps={steps}",
        f"ckpt_every={ckpt_every}",
        "keep_last=1000",
        "log_every=1",
        "eval_every=0",
    ]


def tiny_args(
    out: Path, device: str, steps: int, ckpt_every: int, precision: str, processes: int, lr: float | None = None
) -> list[str]:
    """Command-line overrides of the tiny run for one process of `processes` (the per-rank batch share).

    `lr`: the peak learning rate; None keeps the tiny preset's.
    """
    if GLOBAL_IMAGES % processes or GLOBAL_CLIPS % processes:
        raise ValueError(f"the global batch ({GLOBAL_IMAGES} images, {GLOBAL_CLIPS} clips) must split into {processes}")
    return [
        *tiny_run_args(out, device, steps, ckpt_every, precision),
        "heldout_images=0",
        "heldout_clips=0",
        "data.image_size=32",
        "data.clip_frames=5",
        "data.num_workers=0",
        f"data.image_batch_size={GLOBAL_IMAGES // processes}",
        f"data.video_batch_size={GLOBAL_CLIPS // processes}",
        "loss.gan=0.1",
        "loss.gan_start=1",
        *([f"optim.lr={lr}"] if lr is not None else []),
    ]


def run_training(
    args: list[str], processes: int, timeout: float = 600, module: str = "hydra_x.train.tokenizer"
) -> None:
    """``python -m MODULE ARGS`` in one process, or under torchrun with `processes`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        cmd = [sys.executable, "-m", module, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        cmd += ["-m", module, *args]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def losses(run_dir: Path, key: str = "loss/total") -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows if key in r}


def resume_elsewhere(source: Path, step: int, target: Path) -> None:
    """Copy `source`'s checkpoint of `step` into a fresh run folder `target`, which then resumes from it."""
    (target / "checkpoints").mkdir(parents=True)
    name = f"step_{step:08d}"
    shutil.copytree(source / "checkpoints" / name, target / "checkpoints" / name)


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def compare(root: Path, device: str, gpus: int, steps: int, resume_step: int, precision: str, lr: float) -> dict:
    tag = f"{precision}-lr{lr:g}"
    one, again, many, moved = (root / f"{run}-{tag}" for run in ("one", "again", "many", "moved"))
    for out in (one, again):
        run_training([*tiny_args(out, device, steps, resume_step, precision, 1, lr), "fsdp=true"], processes=1)
    run_training(tiny_args(many, device, steps, resume_step, precision, gpus, lr), processes=gpus)
    resume_elsewhere(many, resume_step, moved)
    run_training(tiny_args(moved, device, steps, resume_step, precision, 1, lr), processes=1)
    a, b, c, r = losses(one), losses(many), losses(moved), losses(again)
    meta = json.loads((many / "checkpoints" / f"step_{resume_step:08d}" / "meta.json").read_text())
    grad_one, grad_many = losses(one, "grad_norm")[1], losses(many, "grad_norm")[1]
    return {
        "precision": precision,
        "lr": lr,
        "one": a,
        "again": r,
        "many": b,
        "moved": c,
        "checkpoint_world_size": meta["world_size"],
        "step1_grad_norm": [grad_one, grad_many],
        "rel_step1_grad_norm": relative(grad_many, grad_one),
        "max_rel_many_vs_one_to_resume": max(relative(b[s], a[s]) for s in a if s <= resume_step),
        "max_rel_many_vs_one": max(relative(b[s], a[s]) for s in a),
        "max_rel_again_vs_one": max(relative(r[s], a[s]) for s in a),
        "max_rel_moved_vs_one": max(relative(c[s], a[s]) for s in c),
        "max_rel_moved_vs_many": max(relative(c[s], b[s]) for s in c),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=2, help="processes of the multi-GPU run (one per GPU)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: gloo, for a smoke test")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resume-step", type=int, default=15, help="the N-GPU checkpoint resumed on 1")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--lrs", default="1e-3,1e-4", help="comma-separated peak learning rates (1e-3: the preset's)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not 0 < args.resume_step < args.steps:
        parser.error("--resume-step must lie strictly between 0 and --steps")
    if args.device == "cuda":
        import torch

        if torch.cuda.device_count() < args.gpus:
            parser.error(f"--gpus {args.gpus} needs {args.gpus} GPUs; this machine has {torch.cuda.device_count()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="hydra_x_multi_gpu_") as tmp:
        for lr in (float(x) for x in args.lrs.split(",")):
            for precision in args.precisions.split(","):
                results.append(compare(Path(tmp), args.device, args.gpus, args.steps, args.resume_step, precision, lr))
    n = args.gpus
    for r in results:
        print(
            f"\n## tiny, {r['precision']}, lr {r['lr']:g}: 1 vs {n} {args.device} processes, global batch "
            f"{GLOBAL_IMAGES} images or {GLOBAL_CLIPS} clips; the {n}-process checkpoint of step {args.resume_step} "
            f"(saved with world size {r['checkpoint_world_size']}) resumed on 1\n"
        )
        print(
            f"| step | 1 process | 1 process again: rel. diff | {n} processes | rel. diff | resumed on 1 | "
            "rel. diff to 1 process |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for s in sorted(r["one"]):
            moved = r["moved"].get(s)
            cells = [f"{moved:.6f}", f"{relative(moved, r['one'][s]):.2e}"] if moved is not None else ["", ""]
            print(
                f"| {s} | {r['one'][s]:.6f} | {relative(r['again'][s], r['one'][s]):.2e} | {r['many'][s]:.6f} | "
                f"{relative(r['many'][s], r['one'][s]):.2e} | "
                f"{cells[0]} | {cells[1]} |"
            )
    k = args.resume_step
    print(
        f"\n| precision | lr | step-1 grad norm, rel. diff {n} vs 1 | max rel. diff {n} vs 1, steps 1-{k} | "
        f"steps 1-{args.steps} | 1 vs 1 again (noise floor) | resumed on 1 vs 1 | resumed on 1 vs {n} |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['precision']} | {r['lr']:g} | {r['rel_step1_grad_norm']:.1e} | "
            f"{r['max_rel_many_vs_one_to_resume']:.1e} | {r['max_rel_many_vs_one']:.1e} | "
            f"{r['max_rel_again_vs_one']:.1e} | "
            f"{r['max_rel_moved_vs_one']:.1e} | {r['max_rel_moved_vs_many']:.1e} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
