"""Training throughput and MFU of the tokenizer, teachers included, through the real training loop.

    python benchmarks/tokenizer_train_speed.py                       # so400m, H100: images and clips
    python benchmarks/tokenizer_train_speed.py --video-batch 8 --compile on --compile-mode reduce-overhead \
        --cases clips --profile 30 --trace /tmp/clips    # + where the GPU waits, and a Chrome trace
    python benchmarks/tokenizer_train_speed.py --preset tiny --device cpu --steps 4 --image-batch 2 \
        --video-batch 1 --size 32 --workers 0 --tiny-teachers

Runs ``hydra_x.train.tokenizer.train`` for a few steps per case (images only, clips only) on the embedded
data, with random-weight teachers of the real sizes (SigLIP 2 So400m/16 for images, V-JEPA 2 ViT-L/16 for
clips, built from configs) and LPIPS with random VGG weights, so every cost of a real step is there. It
prints samples/s, tokens/s and MFU of the last logging window (the first window holds compilation and the
FLOP count) against the bf16 matmul ceiling measured in the same run. ``--profile`` adds the device ops of 3
more steps and where the GPU sat idle, charged to the part of the step the host was in.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from profile_train import ProfileOptimizerSteps

from hydra_x.config import parse_value
from hydra_x.data.config import DataConfig, SourceConfig
from hydra_x.losses import LPIPS, save_lpips
from hydra_x.teachers.tiny import save_tiny_teacher
from hydra_x.tokenizer import tokenizer_config
from hydra_x.train.optim import OptimConfig
from hydra_x.train.parallel import COMPILE_MODES
from hydra_x.train.tokenizer import LossConfig, TeacherConfig, train
from hydra_x.train.tokenizer.recipes import tiny

# Real teacher sizes, random weights (the benchmark measures cost, not quality).
SIGLIP2_SO400M = dict(
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=27,
    num_attention_heads=16,
    patch_size=16,
    num_patches=256,
)
VJEPA2_L = dict(
    hidden_size=1024,
    mlp_ratio=4.0,
    num_hidden_layers=24,
    num_attention_heads=16,
    patch_size=16,
    tubelet_size=2,
    crop_size=256,
    frames_per_clip=64,
    pred_hidden_size=384,
    pred_num_hidden_layers=2,
    pred_num_attention_heads=12,
    num_pooler_layers=1,
)


def run_case(args, kind: str, root: Path, teachers: TeacherConfig, lpips_path: Path, compile_blocks: bool) -> dict:
    out = root / f"{kind}-{'compiled' if compile_blocks else 'eager'}"
    source = "embedded_images" if kind == "images" else "embedded_videos"
    cfg = tiny()
    cfg.out_dir, cfg.device = str(out), args.device
    cfg.precision = "bf16" if args.device == "cuda" else "fp32"
    cfg.data = DataConfig(
        sources=(SourceConfig(source),),
        image_size=args.size,
        aspect_buckets=False,
        clip_frames=17,
        image_batch_size=args.image_batch,
        video_batch_size=args.video_batch,
        num_workers=args.workers,
    )
    cfg.optim = OptimConfig(lr=1e-4, warmup_steps=10)
    cfg.loss = LossConfig(lpips=1.0, lpips_weights=str(lpips_path), lpips_required=True, kl=1e-4)
    cfg.teachers = teachers
    # With --profile, 3 more steps run after the measured ones and are profiled (outside the measured window).
    cfg.steps = args.steps + (3 if args.profile else 0)
    cfg.log_every, cfg.eval_every, cfg.ckpt_every = args.steps // 2, 0, 10**9
    cfg.fsdp = args.fsdp or None
    cfg.activation_checkpointing, cfg.compile, cfg.ema_decay = args.activation_checkpointing, compile_blocks, 0.999
    cfg.compile_mode = args.compile_mode
    cfg.heldout_images = cfg.heldout_clips = 0
    cfg.model = tokenizer_config(args.preset, **{field: parse_value(value) for field, value in args.model_override})
    first = args.steps if args.profile else 10**9
    trace = f"{args.trace}-{kind}.json.gz" if args.trace else None
    with ProfileOptimizerSteps(first=first, last=first + 3, trace=trace) as device_profile:
        train(cfg)
    if args.profile:
        print(f"\n### device ops, {kind}, compiled {compile_blocks} (3 steps)\n{device_profile.table(args.profile)}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = next(r for r in rows if "samples_per_s" in r and r["step"] == args.steps)
    shutil.rmtree(out, ignore_errors=True)  # an so400m checkpoint with its optimizer is ~15 GB
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
    return {"case": kind, "compiled": compile_blocks, "peak_gib": peak, **last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="so400m")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--image-batch", type=int, default=32)
    parser.add_argument("--video-batch", type=int, default=4)
    # The figures are those of the second half: with reduce-overhead, CUDA graphs are still being recorded
    # over the first ~20 steps.
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--compile", choices=["off", "on", "both"], default="off")
    parser.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        default="default",
        help="torch.compile mode of the blocks (reduce-overhead: CUDA graphs)",
    )
    parser.add_argument(
        "--fsdp", action="store_true", help="FSDP2 on one process: bf16 compute weights instead of autocast"
    )
    parser.add_argument("--cases", default="images,clips", help="comma-separated: images, clips")
    parser.add_argument(
        "--model-override",
        nargs=2,
        action="append",
        default=[],
        metavar=("FIELD", "VALUE"),
        help="a TokenizerConfig field for every case, e.g. --model-override attention_impl flex",
    )
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS", help="print the top ROWS device ops")
    parser.add_argument("--trace", default=None, metavar="PREFIX", help="with --profile: PREFIX-<case>.json.gz")
    parser.add_argument("--tiny-teachers", action="store_true", help="tiny teachers (CPU smoke test)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="hydra_x_train_speed_"))
    image_overrides = {} if args.tiny_teachers else SIGLIP2_SO400M
    video_overrides = {} if args.tiny_teachers else VJEPA2_L
    teachers = TeacherConfig(
        image=str(save_tiny_teacher("siglip2", root / "siglip2", **image_overrides)),
        video=str(save_tiny_teacher("vjepa2", root / "vjepa2", **video_overrides)),
    )
    lpips_path = save_lpips(LPIPS(), root / "lpips_random.safetensors")  # random VGG: cost only
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    results = []
    for compile_blocks in modes:
        for kind in args.cases.split(","):
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            results.append(run_case(args, kind, root, teachers, lpips_path, compile_blocks))
            torch.cuda.empty_cache() if args.device == "cuda" else None

    teachers_label = "tiny" if args.tiny_teachers else "SigLIP 2 So400m + V-JEPA 2 L"
    print(f"\n## Tokenizer training throughput: preset {args.preset}, {args.size}^2, teachers {teachers_label}")
    batch = f"{args.image_batch} images or {args.video_batch} clips of 17 frames"
    print(
        f"per-step batch: {batch}; activation checkpointing {args.activation_checkpointing}; fsdp {args.fsdp}; "
        f"compile mode {args.compile_mode}\n"
    )
    print("| case | compiled | samples/s | tokens/s | MFU | matmul ceiling TFLOP/s | data wait | peak GiB | loss |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        ceiling = f"{r['mfu_peak_tflops']:.0f}" if "mfu_peak_tflops" in r else "-"
        print(
            f"| {r['case']} | {r['compiled']} | {r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} | {mfu} | "
            f"{ceiling} | "
            f"{100 * r['data_wait_fraction']:.1f}% | {r['peak_gib']:.1f} | {r['loss/total']:.4f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
