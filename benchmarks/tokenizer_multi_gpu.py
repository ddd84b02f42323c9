"""1 GPU against N GPUs: the same tiny run gives matching losses, and an N-GPU checkpoint resumes on 1 GPU.

    python benchmarks/tokenizer_multi_gpu.py                      # 2 GPUs, fp32 and bf16
    python benchmarks/tokenizer_multi_gpu.py --gpus 4 --steps 40 --resume-step 20 --precisions bf16
    python benchmarks/tokenizer_multi_gpu.py --device cpu --steps 4 --resume-step 2 --precisions fp32  # gloo

For each precision, three runs of ``hydra_x.train.tokenizer --config tiny`` on the embedded data, all with the
same global batch (8 images or 2 clips a step; the GAN on from step 1, so the replicated discriminator's
gradient all-reduce is in the path):
- **1 GPU**: one process, FSDP2 on a one-process group (``fsdp=true``), so it has the same mixed-precision
  policy as the N-GPU run (bf16 compute weights, fp32 gradient reduction) and differs only in the split;
- **N GPUs**: torchrun with N processes, FSDP2, each rank a 1/N share of the batch;
- **resumed on 1**: the N-GPU checkpoint of ``--resume-step``, copied to a fresh run folder and resumed by one
  process in the default one-GPU mode (no FSDP: the sharded DCP state is loaded into plain tensors), for the
  remaining steps.
It prints the losses side by side and the largest relative differences. In fp32 they differ only by the
order of floating-point sums (the split, the all-reduce); in bf16 also by where bf16 rounding happens (and
the resumed run uses autocast rather than FSDP2's bf16 weights).
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


def tiny_args(out: Path, device: str, steps: int, ckpt_every: int, precision: str, processes: int) -> list[str]:
    """Command-line overrides of the tiny run for one process of `processes` (the per-rank batch share)."""
    if GLOBAL_IMAGES % processes or GLOBAL_CLIPS % processes:
        raise ValueError(f"the global batch ({GLOBAL_IMAGES} images, {GLOBAL_CLIPS} clips) must split into {processes}")
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
        "heldout_images=0",
        "heldout_clips=0",
        "data.image_size=32",
        "data.clip_frames=5",
        "data.num_workers=0",
        f"data.image_batch_size={GLOBAL_IMAGES // processes}",
        f"data.video_batch_size={GLOBAL_CLIPS // processes}",
        "loss.gan=0.1",
        "loss.gan_start=1",
    ]


def run_training(args: list[str], processes: int, timeout: float = 600) -> None:
    """``python -m hydra_x.train.tokenizer ARGS`` in one process, or under torchrun with `processes`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        cmd = [sys.executable, "-m", "hydra_x.train.tokenizer", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        cmd += ["-m", "hydra_x.train.tokenizer", *args]
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


def compare(root: Path, device: str, gpus: int, steps: int, resume_step: int, precision: str) -> dict:
    one, many, moved = root / f"one-{precision}", root / f"many-{precision}", root / f"moved-{precision}"
    run_training([*tiny_args(one, device, steps, resume_step, precision, 1), "fsdp=true"], processes=1)
    run_training(tiny_args(many, device, steps, resume_step, precision, gpus), processes=gpus)
    resume_elsewhere(many, resume_step, moved)
    run_training(tiny_args(moved, device, steps, resume_step, precision, 1), processes=1)
    a, b, c = losses(one), losses(many), losses(moved)
    meta = json.loads((many / "checkpoints" / f"step_{resume_step:08d}" / "meta.json").read_text())
    return {
        "precision": precision,
        "one": a,
        "many": b,
        "moved": c,
        "checkpoint_world_size": meta["world_size"],
        "max_rel_many_vs_one": max(relative(b[s], a[s]) for s in a),
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
        for precision in args.precisions.split(","):
            results.append(compare(Path(tmp), args.device, args.gpus, args.steps, args.resume_step, precision))
    n = args.gpus
    for r in results:
        print(
            f"\n## tiny, {r['precision']}: 1 vs {n} {args.device} processes, global batch {GLOBAL_IMAGES} images or "
            f"{GLOBAL_CLIPS} clips; the {n}-process checkpoint of step {args.resume_step} (saved with world size "
            f"{r['checkpoint_world_size']}) resumed on 1\n"
        )
        print(f"| step | 1 process | {n} processes | rel. diff | resumed on 1 | rel. diff to 1 process |")
        print("|---:|---:|---:|---:|---:|---:|")
        for s in sorted(r["one"]):
            moved = r["moved"].get(s)
            cells = [f"{moved:.6f}", f"{relative(moved, r['one'][s]):.2e}"] if moved is not None else ["", ""]
            print(
                f"| {s} | {r['one'][s]:.6f} | {r['many'][s]:.6f} | {relative(r['many'][s], r['one'][s]):.2e} | "
                f"{cells[0]} | {cells[1]} |"
            )
    print(f"\n| precision | max rel. diff, {n} vs 1 | resumed on 1 vs 1 | resumed on 1 vs {n} |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['precision']} | {r['max_rel_many_vs_one']:.2e} | {r['max_rel_moved_vs_one']:.2e} | "
            f"{r['max_rel_moved_vs_many']:.2e} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
