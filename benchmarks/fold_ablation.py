"""The paper's temporal-fold ablation at `small` size on one GPU: attention across time x temporal folds.

    python benchmarks/fold_ablation.py --minutes-per-variant 1.2    # H200: about 4.5 minutes in all
    python benchmarks/fold_ablation.py --steps 1000                 # a fixed number of steps per variant
    python benchmarks/fold_ablation.py --smoke                      # CPU: 2 steps per variant, to check the script

Trains the `small` tokenizer from scratch once per variant through the real training entry point
(``hydra_x.train.tokenizer.train`` with the `small` recipe changed here) on the embedded clips only (17 frames
of 128^2, batch 16, one data order and seed for all), for the same number of optimizer steps:

    full attention, one 4x fold | causal, one 4x fold | tubelet, one 4x fold | tubelet, two 2x folds (the paper's)

The attention mode is the whole tokenizer's (Gen-ViT, Sem-ViT, decoder). The paper's final variant runs first
under the wall-clock budget (``time_budget_minutes``: start-up included); the number of steps it reaches is
every other variant's. One table follows: steps, the wall-clock seconds of the whole run (start-up, the loop,
the last evaluation, the export), the steady ms per step (the last logging window), held-out clip PSNR / SSIM
(the run's own evaluation at its last step: clips of the held-out photographs, posterior mean) and encode +
decode of a 17 x 256^2 clip (bf16, batch 1, CUDA events, median of 10 after 3 warm-up calls). On an H200
(eager, batch 16) a step takes 83-114 ms by variant and each run 15-25 s beyond its steps (start-up, data
workers, the last evaluation, the export, the timing): 1.2 minutes should give the first run roughly 350 steps
(estimated from runs of 60 steps per variant).

No LPIPS (its VGG weights cannot be fetched offline), no GAN, no teachers: L1 and KL only, so the Sem-ViT
runs but learns nothing. The EMA is off: the scores are those of the trained weights. These are short single
runs: treat differences under a few tenths of a dB as noise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tokenizer_speed import time_ms

from hydra_x.data.config import SourceConfig
from hydra_x.data.embedded import heldout_clips
from hydra_x.tokenizer import HydraXTokenizer
from hydra_x.train.tokenizer import LossConfig, TokenizerTrainConfig, train
from hydra_x.train.tokenizer.recipes import small

PAPER = "tubelet, two 2x folds (paper)"
# Variant -> TokenizerConfig changes; the paper's final (the `small` preset as it is) comes first: it sets the steps.
VARIANTS: dict[str, dict[str, Any]] = {
    PAPER: dict(attention="tubelet", temporal_folds=(2, 2)),
    "tubelet, one 4x fold": dict(attention="tubelet", temporal_folds=(4, 1)),
    "causal, one 4x fold": dict(attention="causal", temporal_folds=(4, 1)),
    "full, one 4x fold": dict(attention="full", temporal_folds=(4, 1)),
}


def variant_config(
    changes: dict[str, Any], *, out_dir: str, steps: int, batch: int, workers: int
) -> TokenizerTrainConfig:
    """The `small` recipe on the embedded clips alone (17 x 128^2), reconstruction only, the model changed by
    ``changes``; every variant gets the same data, optimizer, seed and steps."""
    cfg = small()
    cfg.model = cfg.model.replace(**changes)  # sizes derived from the folds (fold_at, decoder_unfold_at) follow
    cfg.data.sources = (SourceConfig("embedded_videos"),)
    cfg.data.clip_frames, cfg.data.image_size = 17, 128
    cfg.data.video_batch_size, cfg.data.num_workers = batch, workers
    cfg.loss = LossConfig(l1=1.0, lpips=0.0, kl=1e-6, distill_image=0.0, distill_video=0.0)
    cfg.optim.warmup_steps = 50  # runs of a few hundred steps: the recipe's 300 would never reach the peak LR
    cfg.heldout_images, cfg.heldout_clips = 0, 8
    cfg.steps, cfg.out_dir, cfg.ema_decay = steps, out_dir, 0.0
    cfg.eval_every = cfg.ckpt_every = 10**9  # evaluated and checkpointed once, at the last step
    cfg.compile = False  # eager: compiling each variant would cost more than its training budget
    return cfg


def encode_decode_ms(export: Path, device: torch.device, size: int, repeats: int, warmup: int) -> float:
    """Median ms of encode + decode of one 17-frame clip of size^2 (bf16 autocast on CUDA)."""
    model = HydraXTokenizer.from_pretrained(export, device=device).eval()
    model.validate_inputs = False
    clip = heldout_clips(1, 17, size).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.no_grad(), autocast:
        return time_ms(lambda: model.decode(model.encode(clip), video=True), device, repeats, warmup)


def last_step_ms(run_dir: Path, batch: int) -> float:
    """ms per step in the run's last logging window (after warm-up: the first window holds it)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rate = [r["samples_per_s"] for r in rows if "samples_per_s" in r][-1]
    return 1e3 * batch / rate


def run_variant(name: str, cfg: TokenizerTrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    summary = train(cfg)
    wall = time.perf_counter() - start
    run_dir = Path(cfg.out_dir)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    device = torch.device("cpu" if args.smoke else "cuda")
    size, repeats, warmup = (64, 2, 1) if args.smoke else (256, 10, 3)
    return {
        "variant": name,
        "steps": summary["step"],
        "wall_s": wall,
        "ms_per_step": last_step_ms(run_dir, cfg.data.video_batch_size),
        "psnr": summary["heldout_clip_psnr"],
        "ssim": summary["heldout_clip_ssim"],
        "encode_decode_ms": encode_decode_ms(run_dir / "export", device, size, repeats, warmup),
        "clip_size": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes-per-variant", type=float, default=1.2, help="wall-clock budget of the first run")
    parser.add_argument("--steps", type=int, default=None, help="fixed steps per variant (no time budget)")
    parser.add_argument("--batch", type=int, default=16, help="clips per step")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--smoke", action="store_true", help="CPU, 2 training steps per variant, batch 1")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder, removed)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("fold_ablation needs a CUDA GPU (or --smoke for a CPU check of the script)")
    root = Path(args.out or tempfile.mkdtemp(prefix="hydra_x_folds_"))
    steps = 2 if args.smoke else args.steps
    results = []
    for i, (name, changes) in enumerate(VARIANTS.items()):
        cfg = variant_config(
            changes,
            out_dir=str(root / f"variant{i}"),
            steps=steps or 10**6,
            batch=1 if args.smoke else args.batch,
            workers=0 if args.smoke else args.workers,
        )
        if args.smoke:
            cfg.device, cfg.heldout_clips = "cpu", 1
        elif steps is None:  # the first run sets the steps: the budget decides its length
            cfg.time_budget_minutes, cfg.budget_probe_steps, cfg.budget_reserve_s = args.minutes_per_variant, 40, 15.0
        results.append(run_variant(name, cfg, args))
        steps = results[0]["steps"]
        print(json.dumps(results[-1]), flush=True)
    if not args.out:
        shutil.rmtree(root, ignore_errors=True)
    print_table(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    size = results[0]["clip_size"]
    budget = "2 steps (smoke)" if args.smoke else f"{results[0]['steps']} steps each"
    print(f"\n## Fold ablation: `small` from scratch, embedded clips 17 x 128^2, {budget}, no LPIPS\n")
    print(f"| variant | steps | wall s | ms / step | clip PSNR dB | clip SSIM | enc+dec ms, 17 x {size}^2 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['variant']} | {r['steps']} | {r['wall_s']:.0f} | {r['ms_per_step']:.0f} | {r['psnr']:.2f} | "
            f"{r['ssim']:.4f} | {r['encode_decode_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
