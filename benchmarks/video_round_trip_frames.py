"""Which frames of a clip does a tokenizer give back? The held-out video prompts' truth clips (one object moving),
encoded and decoded by a tokenizer alone, read frame by frame with the shapes scorer's reader. `hydra-x eval
shapes` counts a clip as present only if its object is read once, with its colour and shape, in every frame, and
the tokenizer's round trip of the truth bounds what any generated clip can score; this says which frames fail it.

    python benchmarks/video_round_trip_frames.py --tokenizer runs/demo/tokenizer --size 64 --frames 9
    python benchmarks/video_round_trip_frames.py --tokenizer runs/shapes-world-job/A/tokenizer --frames 9 17

Printed per frame index (the first frame has a latent step of its own, each later latent step holds as many
frames as the tokenizer's temporal folds multiply to, 4 by default): the share of clips whose object is read once
with its colour and shape, read once by colour alone (any shape), not read at all, and the frame's PSNR against the
truth; then the round trip's presence and motion accuracy as `eval shapes` reports them.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch

from hydra_x.data.shapes import render_clip
from hydra_x.eval.metrics import psnr
from hydra_x.eval.prompts import prompt_set
from hydra_x.eval.shapes import score_video, video_summary
from hydra_x.eval.shapes_read import read_clip
from hydra_x.tokenizer import HydraXTokenizer
from hydra_x.tokenizer.io import load_tokenizer, resolve_source
from hydra_x.unified.sampling import render


@torch.no_grad()
def frame_table(tokenizer: HydraXTokenizer, size: int, frames: int, batch_size: int, seed: int) -> dict:
    """Per frame index: shares of clips read right (kind), by colour alone, missed; mean PSNR (identical frames
    count 100 dB). And the summary."""
    items = list(prompt_set().videos)
    colour_ok, missed, psnr_sum = ([0.0] * frames for _ in range(3))
    scores = []
    view = SimpleNamespace(tokenizer=tokenizer, device=next(tokenizer.parameters()).device)  # what render reads
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        truth = torch.stack([render_clip(i.clip, frames, size, size) for i in batch])
        z = tokenizer.encode(truth.to(view.device, tokenizer._dtype()))
        recon = render(view, z, seed=seed + start)
        for item, x, y in zip(batch, truth, recon):
            scores.append(score_video(item, y))
            for f, objects in enumerate(read_clip(y)):
                same_colour = sum(o.colour == item.kind[0] for o in objects)
                colour_ok[f] += same_colour == 1
                missed[f] += same_colour == 0
            per_frame = psnr(x.transpose(0, 1), y.transpose(0, 1)).clamp(max=100.0)  # (F,)
            psnr_sum = [total + float(db) for total, db in zip(psnr_sum, per_frame)]
    n, summary = len(items), video_summary(scores)
    read = summary["frame_presence"]  # the asked object found once, colour and shape, as `eval shapes` counts it
    rows = [(f, read[f], colour_ok[f] / n, missed[f] / n, psnr_sum[f] / n) for f in range(frames)]
    return {"rows": rows, "summary": summary, "n": n, "latent_steps": int(z.shape[2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="a tokenizer run folder or save_pretrained folder")
    parser.add_argument("--size", type=int, default=64, help="picture side (px)")
    parser.add_argument("--frames", type=int, nargs="+", default=[9], help="frames a clip (1 + 4k)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="the flow decoder's noise, where it has one")
    args = parser.parse_args()
    tokenizer = load_tokenizer(resolve_source(args.tokenizer, None, None, "small"), torch.device(args.device), None)
    folds = tokenizer.config.temporal_folds
    per_step = folds[0] * folds[1]
    print(f"tokenizer {args.tokenizer}: {per_step} frames a latent step after the first, {args.size} px")

    for frames in args.frames:
        out = frame_table(tokenizer, args.size, frames, args.batch_size, args.seed)
        print(f"\n{out['n']} held-out clips of {frames} frames ({out['latent_steps']} latent steps)")
        print("| frame | object read (colour and shape) | its colour read once | not read | PSNR dB |")
        print("|---:|---:|---:|---:|---:|")
        for f, kind, colour, miss, db in out["rows"]:
            print(f"| {f} | {100 * kind:.0f}% | {100 * colour:.0f}% | {100 * miss:.0f}% | {db:.2f} |")
        s = out["summary"]
        print(f"round trip: object in every frame {100 * s['presence']:.1f}%, motion {100 * s['motion_accuracy']:.1f}%")


if __name__ == "__main__":
    main()
