"""Do training and sampling agree end to end, and how fast does a checkpoint learn a task? Train a unified
checkpoint further on a few fixed caption -> image pairs (or, with --task edit, source + instruction -> target
triples), then generate them back and compare with the pairs' latents; once per mean of the logit-normal flow
times. With --fresh every step draws new examples and the scores are on scenes never trained on; --copy makes
every edit's target its source (the part of editing that needs no instruction).

    python benchmarks/memorise_pairs.py --ckpt runs/demo/unified/export --size 64            # CPU, about 1 minute each
    python benchmarks/memorise_pairs.py --ckpt runs/demo/unified/export --size 64 --task edit --time-means 1
    python benchmarks/memorise_pairs.py --ckpt runs/demo/unified/export --task edit --fresh --pairs 8 --steps 900 \
        --time-means 1 [--copy]                                                                 # CPU, about 4 minutes
    python benchmarks/memorise_pairs.py --ckpt runs/unified-small/export --size 128 --device cuda

A model that memorised the pairs at every noise level generates them back (latent error well under the latents'
variance). Printed per flow-time mean: the last training loss, the error of the predicted clean latent
x0 = z_t - t v at several times t (the prompt alone must carry the picture at t = 1), and the error of the samples.
For edits also the errors against the sources: an edit mostly copies its source, so a model that learned anything
about editing predicts closer to the source than the variance, and copying the source exactly scores "source vs
target". For generation also how far the prediction moves with another example's caption or none: a model that
ignores its captions (in effect unconditional, and guidance has nothing to amplify) moves it by next to nothing.
With ``--steps 0`` the checkpoint is measured as it is.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from hydra_x.data.examples import Visual
from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.train.unified.batch import build_batch
from hydra_x.train.unified.objective import unified_loss
from hydra_x.train.unified.recipes import tiny
from hydra_x.unified.inputs import VisualInputs
from hydra_x.unified.model import HydraX
from hydra_x.unified.sampling import edit_latents, generate_latents

TIMES = (1.0, 0.9, 0.7, 0.5, 0.3)
CAPTION_TIMES = (1.0, 0.7)  # where the caption's effect on the prediction is measured (generation)
FROZEN = ("tokenizer.gen_vit.", "tokenizer.decoder.")  # never trained by the unified stages


def draw(args, seed: int, first: int) -> list:
    """``args.pairs`` shapes-world examples of the task (``--copy``: edits whose target is their source)."""
    tasks = ShapesTasks(seed, "train", args.size, 5)
    examples = [tasks.example("edit" if args.task == "edit" else "image_gen", first + k) for k in range(args.pairs)]
    if args.copy:
        for e in examples:
            e.visuals[1] = Visual(e.visuals[0].pixels, "generate")
    return examples


def tokens(z: torch.Tensor) -> torch.Tensor:
    """Latents (B, C, S, h, w) -> (B, S h w, C)."""
    return z.permute(0, 2, 3, 4, 1).flatten(1, 3)


def predicted_x0(model, examples, cfg, t: float, noise: torch.Tensor | None = None):
    """x0 = z_t - t v that the model predicts for each generated block at flow time ``t``, its target latents, the
    sources' (edits; else None) and the noise (one draw unless given)."""
    packed, visuals, _ = build_batch(model, examples, cfg, 0, 0)
    z = model.encode_each([examples[p.sample].visuals[p.block].pixels for p in packed.placements])
    gen = [i for i, p in enumerate(packed.placements) if p.role == "generate"]
    target = torch.stack([z[i] for i in gen])
    if noise is None:
        noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(1)).to(target.device)
    source_of = {tgt: src for src, tgt in visuals.pairs}
    source = torch.stack([z[source_of[i]] for i in gen]) if source_of else None
    inputs = VisualInputs(z=z, t=torch.full((len(gen),), t), noise=list(noise), pairs=visuals.pairs)
    velocity = model(packed, inputs).velocity.float().view(len(gen), -1, target.shape[1])
    return tokens((1 - t) * target + t * noise) - t * velocity, target, source, noise


def with_captions(examples, captions: list[str]) -> list:
    """The generation examples with other captions (the user's turn)."""
    return [replace(e, messages=[{**e.messages[0], "content": c}, *e.messages[1:]]) for e, c in zip(examples, captions)]


@torch.no_grad()
def x0_errors(model, examples, cfg, row: dict) -> None:
    """The error of the clean latent the model predicts, x0 = z_t - t v, at fixed times (one noise draw), against
    the target and, for edits, against the source. For generation also how much the caption moves it: the
    difference from the prediction with another example's caption, and with none (the unconditional branch)."""
    for t in TIMES:
        x0, target, source, noise = predicted_x0(model, examples, cfg, t)
        row[f"x0 error t={t}"] = float((x0 - tokens(target)).square().mean())
        if source is not None and t == 1.0:
            row["x0 vs source t=1"] = float((x0 - tokens(source)).square().mean())
        if source is None and t in CAPTION_TIMES:
            captions = [e.messages[0]["content"] for e in examples]
            for label, others in (
                ("another caption", captions[1:] + captions[:1]),
                ("no caption", [""] * len(captions)),
            ):
                x0_other = predicted_x0(model, with_captions(examples, others), cfg, t, noise)[0]
                row[f"{label} moves x0 t={t}"] = float((x0 - x0_other).square().mean())


def learn(args, time_mean: float) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = tiny()
    cfg.loss.cond_dropout, cfg.loss.time_mean = 0.0, time_mean
    model = HydraX.from_pretrained(args.ckpt, device=device).train()
    examples = draw(args, args.seed, 0)
    params = [p for n, p in model.named_parameters() if not n.startswith(FROZEN)]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    for step in range(args.steps):
        if args.fresh:
            examples = draw(args, args.seed, step * args.pairs)
        packed, visuals, _ = build_batch(model, examples, cfg, step, 0)
        loss = unified_loss(model(packed, visuals), cfg.loss, device).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    row = {"time_mean": time_mean, "loss": float(loss) if args.steps else float("nan")}
    if args.fresh:  # scored on scenes of another seed, never trained on
        examples = draw(args, args.seed + 1000, 0)
    x0_errors(model, examples, cfg, row)
    with torch.no_grad():
        z0 = model.encode(torch.stack([e.visuals[-1].pixels for e in examples]))
        if args.task == "generate":
            captions = [e.messages[0]["content"] for e in examples]
            z = generate_latents(model, captions, "image", height=args.size, width=args.size, steps=30, guidance=1.0)
        else:
            sources = [e.visuals[0].pixels for e in examples]
            instructions = [e.messages[0]["content"].removeprefix("<image>\n") for e in examples]
            z = edit_latents(model, sources, instructions, steps=30, guidance=1.0)
            z_src = model.encode(torch.stack(sources))
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
    parser.add_argument("--pairs", type=int, default=4, help="examples (of each step, with --fresh)")
    parser.add_argument("--fresh", action="store_true", help="new examples every step; scored on unseen ones")
    parser.add_argument("--copy", action="store_true", help="edits whose target is their source (--task edit)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=5, help="which shapes-world training scenes")
    parser.add_argument("--time-means", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.copy and args.task != "edit":
        parser.error("--copy needs --task edit")
    rows = [learn(args, m) for m in args.time_means]
    keys = [k for k in rows[0] if k != "time_mean"]
    what = (
        f"{args.task}{' (copy)' if args.copy else ''}: {args.pairs} {'new examples a step' if args.fresh else 'pairs'}"
    )
    print(f"\n{what}, {args.steps} steps from {args.ckpt}, {args.size} px; mean squared latent errors")
    print("| flow-time mean | " + " | ".join(keys) + " |\n|---:|" + "---:|" * len(keys))
    for row in rows:
        print(f"| {row['time_mean']:g} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
