"""Reconstruction PSNR of a trained tokenizer on every photograph of the embedded data set, training and held out.

    python benchmarks/tokenizer_recon_by_photo.py runs/small/export
    python benchmarks/tokenizer_recon_by_photo.py runs/small/export --size 128 --crops 16 --clips 4 --frames 17

Tells a generalisation gap (held-out photographs worse than training ones of the same kind) from content
difficulty (textures worse than smooth photographs, whether trained on or not). Crops and clips are drawn the
way training draws them (random position and scale, camera moves with moving objects), from a fixed seed.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from hydra_x import HydraXTokenizer
from hydra_x.data import HELDOUT_PHOTOS, TRAIN_PHOTOS
from hydra_x.data.embedded import photo_clip, photo_crop
from hydra_x.eval.metrics import psnr, video_psnr


def draw(kind: str, name: str, size: int, frames: int, rng: np.random.Generator) -> torch.Tensor:
    """A training-style crop (kind "image") or clip (kind "clip") of the photograph ``name``."""
    if kind == "image":
        return photo_crop(name, (size, size), rng)
    return photo_clip(name, (size, size), frames, rng)


@torch.no_grad()
def photo_table(model: HydraXTokenizer, size: int, crops: int, clips: int, frames: int, seed: int = 0) -> list[dict]:
    """One row per photograph: split, mean PSNR of `crops` crops and of `clips` clips (posterior mean)."""
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    rows = []
    for k, name in enumerate(TRAIN_PHOTOS + HELDOUT_PHOTOS):
        rng = np.random.default_rng([seed, k])
        row = {"photo": name, "split": "held out" if name in HELDOUT_PHOTOS else "train"}
        for kind, n, score in (("image", crops, psnr), ("clip", clips, video_psnr)):
            if n:
                x = torch.stack([draw(kind, name, size, frames, rng) for _ in range(n)]).to(device)
                with autocast:
                    rec = model(x, semantic=False).x_rec.float().clamp(-1, 1)
                row[f"{kind}_psnr"] = score(rec, x).mean().item()
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a save_pretrained folder (a run's export/) or a Hub id")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--crops", type=int, default=16, help="crops per photograph")
    parser.add_argument("--clips", type=int, default=4, help="clips per photograph (0: images only)")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    model = HydraXTokenizer.from_pretrained(args.model, device=args.device).eval()
    rows = photo_table(model, args.size, args.crops, args.clips, args.frames, args.seed)
    print(f"\n## Reconstruction PSNR by photograph: {args.model}, {args.size}^2, {args.frames}-frame clips\n")
    print("| photograph | split | images dB | clips dB |")
    print("|---|---|---:|---:|")
    for r in rows:
        cells = [f"{r[k]:.2f}" if k in r else "-" for k in ("image_psnr", "clip_psnr")]
        print(f"| {r['photo']} | {r['split']} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
