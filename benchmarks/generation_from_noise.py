"""From which noise level does a unified checkpoint still draw what it is asked? Each held-out generation prompt's
truth picture is encoded, noised to a start time t0 and sampled from there with its prompt (SDEdit's strength:
``generate_latents(..., init=, start=)``), then scored as ``hydra-x eval shapes`` scores generations. t0 = 1 is
plain generation; t0 near 0 gives the truth back. Where the score falls between them says which part fails: a
model that scores well from t0 = 0.5 but not from 0.8 draws objects it is shown but does not lay them out from
the caption.

    python benchmarks/generation_from_noise.py --ckpt runs/demo/unified/export --size 64     # CPU, about 2 minutes
    python benchmarks/generation_from_noise.py --ckpt runs/unified-small/export --size 128 --device cuda --limit 0

Printed: for each t0, the samples' latent error against the truth (the latents' variance is near 1), the error of
the model's one-step clean estimate at t0 with the right caption and with another prompt's (how much the caption
tells the model there: equal errors mean it draws from the noisy latent alone), and the generation score overall
and by category.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch

from hydra_x.data.shapes import render_image
from hydra_x.eval.prompts import CATEGORIES, prompt_set
from hydra_x.eval.shapes import score_generation
from hydra_x.unified.model import HydraX
from hydra_x.unified.sampling import generate_latents, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="a unified export folder")
    parser.add_argument("--starts", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7, 0.5, 0.3])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--limit", type=int, default=8, help="prompts per category (0: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    model = HydraX.from_pretrained(args.ckpt).to(args.device).eval()
    items = sorted(prompt_set().limited(args.limit or None).generation, key=lambda i: CATEGORIES.index(i.category))
    print(f"{len(items)} prompts ({args.limit or 'all'} per category), {args.size} px, {args.steps} steps")
    header = (
        "| t0 | latent error | clean estimate error, right / other caption | overall | " + " | ".join(CATEGORIES) + " |"
    )
    print("\n" + header + "\n|" + "---:|" * (4 + len(CATEGORIES)))
    for start in args.starts:
        correct: dict[str, list[bool]] = defaultdict(list)
        errors, right, other = [], [], []
        for at in range(0, len(items), args.batch_size):
            batch = items[at : at + args.batch_size]
            truth = model.encode(torch.stack([render_image(i.scene, args.size, args.size) for i in batch]))
            z = generate_latents(
                model,
                [i.prompt for i in batch],
                height=args.size,
                width=args.size,
                steps=args.steps,
                guidance=args.guidance,
                seed=at,
                init=truth,
                start=start,
            )
            errors.append((z - truth).square().mean(dim=(1, 2, 3, 4)).cpu())
            prompts = [i.prompt for i in batch]
            for captions, out in ((prompts, right), (prompts[1:] + prompts[:1], other)):  # other: the next item's
                one_step = dict(height=args.size, width=args.size, steps=1, guidance=1.0, seed=at, start=start)
                estimate = generate_latents(model, captions, init=truth, **one_step)
                out.append((estimate - truth).square().mean(dim=(1, 2, 3, 4)).cpu())
            for item, x in zip(batch, render(model, z, seed=at)):
                correct[item.category].append(score_generation(item, x).correct)
        by_category = {c: sum(v) / len(v) for c, v in correct.items()}
        overall = sum(by_category.values()) / len(by_category)
        cells = " | ".join(f"{100 * by_category[c]:.0f}%" for c in CATEGORIES if c in by_category)
        estimates = f"{torch.cat(right).mean():.3f} / {torch.cat(other).mean():.3f}"
        print(
            f"| {start:g} | {torch.cat(errors).mean():.3f} | {estimates} | {100 * overall:.1f}% | {cells} |", flush=True
        )


if __name__ == "__main__":
    main()
