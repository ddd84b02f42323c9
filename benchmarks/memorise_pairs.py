"""Do training and sampling agree end to end? Train a unified checkpoint further on a few fixed caption -> image
pairs (or, with --task edit, source + instruction -> target triples), then generate them back and compare with
the pairs' latents; once per mean of the logit-normal flow times.

    python benchmarks/memorise_pairs.py --ckpt runs/demo/unified/export --size 64            # CPU, about 1 minute each
    python benchmarks/memorise_pairs.py --ckpt runs/demo/unified/export --size 64 --task edit --time-means 1
    python benchmarks/memorise_pairs.py --ckpt runs/unified-small/export --size 128 --device cuda

A model that memorised the pairs at every noise level generates them back (latent error well under the latents'
variance). Printed per flow-time mean: the last training loss, the error of the predicted clean latent
x0 = z_t - t v at several times t (the prompt alone must carry the picture at t = 1), and the error of the samples.
For edits also the samples' error against the sources: an edit mostly copies its source, so a model that learned
anything about editing comes out closer to the source than the variance.
"""

from __future__ import annotations

import argparse

import torch

from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.train.unified.batch import build_batch
from hydra_x.train.unified.objective import unified_loss
from hydra_x.train.unified.recipes import tiny
from hydra_x.unified.inputs import VisualInputs
from hydra_x.unified.model import HydraX
from hydra_x.unified.sampling import edit_latents, generate_latents

TIMES = (1.0, 0.9, 0.7, 0.5, 0.3)
FROZEN = ("tokenizer.gen_vit.", "tokenizer.decoder.")  # never trained by the unified stages


def memorise(args, time_mean: float) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = tiny()
    cfg.loss.cond_dropout, cfg.loss.time_mean = 0.0, time_mean
    model = HydraX.from_pretrained(args.ckpt, device=device).train()
    task = "edit" if args.task == "edit" else "image_gen"
    examples = [ShapesTasks(args.seed, "train", args.size, 5).example(task, k) for k in range(args.pairs)]
    params = [p for n, p in model.named_parameters() if not n.startswith(FROZEN)]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    for step in range(args.steps):
        packed, visuals, _ = build_batch(model, examples, cfg, step, 0)
        loss = unified_loss(model(packed, visuals), cfg.loss, device).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    row = {"time_mean": time_mean, "loss": float(loss) if args.steps else float("nan")}
    with torch.no_grad():
        z0 = model.tokenizer.encode(torch.stack([e.visuals[-1].pixels for e in examples]).to(device))
        if task == "image_gen":  # x0 errors at fixed times (the training forward's placements are the targets')
            noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1)).to(device)
            packed, _, _ = build_batch(model, examples, cfg, 0, 0)
            for t in TIMES:
                out = model(packed, VisualInputs(z=list(z0), t=torch.full((len(examples),), t), noise=list(noise)))
                velocity = (noise - z0).permute(0, 2, 3, 4, 1)  # (B, S, h, w, C), tokens in placement order
                target = velocity.reshape(-1, z0.shape[1])
                row[f"x0 error t={t}"] = float((out.velocity.float() - target).square().mean()) * t * t
            captions = [e.messages[0]["content"] for e in examples]
            z = generate_latents(model, captions, "image", height=args.size, width=args.size, steps=30, guidance=1.0)
        else:
            sources = [e.visuals[0].pixels for e in examples]
            instructions = [e.messages[0]["content"].removeprefix("<image>\n") for e in examples]
            z = edit_latents(model, sources, instructions, steps=30, guidance=1.0)
            z_src = model.tokenizer.encode(torch.stack(sources).to(device))
            row["sample error vs source"] = float((z.to(device) - z_src).square().mean())
            row["source vs target"] = float((z_src - z0).square().mean())
        row["sample error"] = float((z.to(device) - z0).square().mean())
        row["latent variance"] = float(z0.var())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="a HydraX export (save_pretrained folder)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--task", choices=("generate", "edit"), default="generate")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=5, help="which shapes-world training scenes")
    parser.add_argument("--time-means", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = [memorise(args, m) for m in args.time_means]
    keys = [k for k in rows[0] if k != "time_mean"]
    print(
        f"\n{args.task}: {args.pairs} pairs, {args.steps} steps from {args.ckpt}, {args.size} px; "
        "mean squared latent errors"
    )
    print("| flow-time mean | " + " | ".join(keys) + " |\n|---:|" + "---:|" * len(keys))
    for row in rows:
        print(f"| {row['time_mean']:g} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
