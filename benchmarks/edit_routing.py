"""Does an edit's target see its source where it matters? To copy what an instruction leaves alone, the target
token at grid cell (i, j) must carry the source's latent at (i, j). This measures how much of it each stage of the
model carries, with the target pure noise (t = 1, so nothing of the source can come through the target itself):
the fraction of the source latent's variance at (i, j) that a linear map of the target's features at (i, j)
explains (R^2 on held-back scenes), for

- the source's own embedding (the reference: what the Sem-ViT and projector keep of a clean latent),
- the target's embedding under Source-Target Interaction (the Sem-ViT runs source and target as a 2-step clip),
- the target's embedding in the independent layout (no source: about 0, the floor),
- the LLM's last hidden state at the target's positions, in the model's own layout: what the flow head reads.

    python benchmarks/edit_routing.py --ckpt runs/demo/unified/export --size 64            # CPU, about 20 s
    python benchmarks/edit_routing.py --ckpt runs/unified-small/export --size 128 --device cuda

A model that edits by copying needs the last row near the first; a Sem-ViT distilled from a video teacher
routes each position to its predecessor in time, one trained from scratch offline may not.
"""

from __future__ import annotations

import argparse

import torch

from hydra_x.data.shapes import render_image
from hydra_x.data.shapes_text import ShapesWorld
from hydra_x.unified.model import HydraX
from hydra_x.unified.sampling import PromptAgain, edit_rows, sdpa_attention, visual_spec


def explained(features: torch.Tensor, target: torch.Tensor, train: int, ridge: float = 0.1) -> float:
    """R^2 of ``target`` (n, N, C) from ``features`` (n, N, D) by ridge regression fitted on the first ``train``
    scenes' tokens and scored on the rest's. The ridge (``ridge`` times the features' mean variance) keeps a fit
    with about as many features as tokens from reading noise as signal."""
    x, y = features[:train].flatten(0, 1).float(), target[:train].flatten(0, 1).float()
    x_mean, y_mean = x.mean(0), y.mean(0)
    x, y = x - x_mean, y - y_mean
    gram = x.T @ x
    penalty = ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    fit = torch.linalg.solve(gram + penalty, x.T @ y)
    held_x, held_y = features[train:].flatten(0, 1).float(), target[train:].flatten(0, 1).float()
    residual = ((held_x - x_mean) @ fit + y_mean - held_y).pow(2).sum()
    return float(1 - residual / (held_y - y_mean).pow(2).sum())


@torch.no_grad()
def routing(model: HydraX, scenes: int, size: int, seed: int) -> dict[str, float]:
    world = ShapesWorld(seed=seed, split="train")
    edits = [world.edit_sample(k) for k in range(scenes)]
    z_src = model.encode(torch.stack([render_image(e.source, size, size) for e in edits]))  # (n, C, 1, h, w)
    noise = torch.randn(z_src.shape, generator=torch.Generator().manual_seed(seed)).to(z_src)
    t = torch.ones(scenes, device=z_src.device)
    src_emb, sti_emb = model.pair_embeddings(z_src, noise, t)
    independent = model.visual_embeddings(noise, t)
    rows = edit_rows(model, [e.instruction for e in edits], visual_spec(model, "image", size, size, None)[0])
    target_emb = sti_emb if model.config.edit_layout == "sti" else independent
    with sdpa_attention(model):
        hidden = PromptAgain(model, rows, 1, [[z] for z in z_src])(target_emb)  # (n, N, D)
    truth = z_src[:, :, 0].flatten(2).transpose(1, 2)  # (n, N, C)
    train = scenes * 3 // 4
    return {
        "source's own embedding": explained(src_emb, truth, train),
        "target, STI embedding": explained(sti_emb, truth, train),
        "target, independent embedding": explained(independent, truth, train),
        f"target, LLM last hidden ({model.config.edit_layout})": explained(hidden, truth, train),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="a unified export folder")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--scenes", type=int, default=96, help="edit sources; a quarter held back for the score")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = HydraX.from_pretrained(args.ckpt).to(args.device).eval()
    print("| features at (i, j) | R^2 of the source latent at (i, j) |\n|---|---:|")
    for name, value in routing(model, args.scenes, args.size, args.seed).items():
        print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
