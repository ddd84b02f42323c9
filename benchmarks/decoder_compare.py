"""Regression vs flow-matching pixel decoders, and HYDRA-TOK vs HYDRA-X at `small` size, on one GPU.

    python benchmarks/decoder_compare.py --minutes 2        # H100: three runs of 2 minutes each
    python benchmarks/decoder_compare.py --smoke            # CPU: 2 steps each, to check the script runs

Trains three tokenizers from scratch for the same wall-clock budget on the embedded images (128^2 crops of
the scikit-image photographs, same data order): HYDRA-TOK `hydra-tok-small` (flow decoder, consistency loss),
HYDRA-X `small` with its regression decoder, and HYDRA-X `small` with the flow decoder. Then, on the held-out
photographs, it prints PSNR / SSIM and the decode time per image (batch 16, bf16, CUDA events, median of
10 after warm-up) for 1, 4 and 16 Euler steps of the flow decoders against the regression decoder.

No LPIPS weights, GAN or teachers (offline, nothing pretrained): reconstruction (L1 or flow matching), KL and,
for HYDRA-TOK, its consistency term. The EMA is off so the export holds the trained weights of a short run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from tokenizer_speed import time_ms

from hydra_x.data.config import SourceConfig
from hydra_x.data.embedded import heldout_images
from hydra_x.eval.metrics import psnr, ssim
from hydra_x.tokenizer import HydraXTokenizer
from hydra_x.train.tokenizer import LossConfig, TokenizerTrainConfig, train
from hydra_x.train.tokenizer.recipes import hydra_tok_small, small

FLOW_STEPS = (1, 4, 16)


def variants() -> dict[str, TokenizerTrainConfig]:
    tok = hydra_tok_small()
    regression = small()
    regression.data.sources = (SourceConfig("embedded_images"),)
    regression.heldout_clips = 0
    regression.loss = LossConfig(l1=1.0, lpips=0.0, kl=1e-6, distill_image=0.0, distill_video=0.0)
    flow = small()
    flow.data.sources = (SourceConfig("embedded_images"),)
    flow.heldout_clips = 0
    flow.model = flow.model.replace(decoder="flow")
    flow.loss = LossConfig(flow=1.0, lpips=0.0, kl=1e-6, distill_image=0.0, distill_video=0.0)
    tok.loss.lpips = 0.0  # no VGG weights offline; said once here rather than warned per run
    return {"hydra-tok-small (flow)": tok, "hydra-x small (regression)": regression, "hydra-x small (flow)": flow}


def decode_ms(model: HydraXTokenizer, z: torch.Tensor, steps: int | None, repeats: int = 10) -> float:
    """Median decode time per image in ms (bf16 autocast on CUDA, after 3 warm-up calls)."""
    kwargs = {} if steps is None else {"steps": steps, "generator": torch.Generator(z.device).manual_seed(0)}
    with torch.no_grad(), torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=z.device.type == "cuda"):
        return time_ms(lambda: model.decode(z, **kwargs), z.device, repeats, warmup=3) / z.shape[0]


@torch.no_grad()
def measure(export: Path, images: torch.Tensor) -> list[dict]:
    device = images.device
    model = HydraXTokenizer.from_pretrained(export, device=device).eval()
    flow = model.config.decoder == "flow"
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with autocast():
        z = model.encode(images)
    rows = []
    for steps in FLOW_STEPS if flow else (None,):
        kwargs = {} if steps is None else {"steps": steps, "generator": torch.Generator(device).manual_seed(0)}
        with autocast():
            rec = model.decode(z, **kwargs).float().clamp(-1, 1)
        rows.append(
            {
                "steps": steps,
                "psnr": psnr(rec, images).mean().item(),
                "ssim": ssim(rec, images).mean().item(),
                "decode_ms_per_image": decode_ms(model, z, steps),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="wall-clock training budget per variant")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--compile", action="store_true", help="torch.compile the blocks (the small preset's default)")
    parser.add_argument("--smoke", action="store_true", help="CPU, 2 training steps per variant, tiny batches")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("decoder_compare needs a CUDA GPU (or --smoke for a CPU check of the script)")
    device = "cpu" if args.smoke else "cuda"
    root = Path(tempfile.mkdtemp(prefix="hydra_x_decoders_"))
    images = heldout_images(4 if args.smoke else 16, 128).to(device)
    results = []
    for name, cfg in variants().items():
        cfg.out_dir = str(root / name.split(" ")[0] / cfg.model.decoder)
        cfg.device, cfg.time_budget_minutes, cfg.ema_decay, cfg.compile = device, args.minutes, 0.0, args.compile
        cfg.steps, cfg.eval_every, cfg.ckpt_every, cfg.data.num_workers = 100_000, 10**9, 10**9, args.workers
        if args.smoke:
            cfg.steps, cfg.time_budget_minutes, cfg.compile, cfg.data.num_workers = 2, None, False, 0
            cfg.data.image_batch_size, cfg.heldout_images = 2, 2
        train(cfg)
        log = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
        steps_done = max(r["step"] for r in log)
        for row in measure(Path(cfg.out_dir) / "export", images):
            results.append({"variant": name, "train_steps": steps_done, **row})
        shutil.rmtree(Path(cfg.out_dir) / "checkpoints", ignore_errors=True)

    print(f"\n## Decoders after {args.minutes} min of training each (embedded images, 128^2, 16 held-out photos)\n")
    print("| variant | train steps | decode steps | PSNR dB | SSIM | decode ms / image |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        steps = "-" if r["steps"] is None else r["steps"]
        print(
            f"| {r['variant']} | {r['train_steps']} | {steps} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
            f"{r['decode_ms_per_image']:.3f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
