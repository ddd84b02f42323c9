"""A reference point for the unified model's text-to-image: a plain in-context DiT trained on the same
tokenizer's latents of the same shapes world, scored by the same scorer on the same held-out prompts.

    python benchmarks/latent_dit_baseline.py --tokenizer runs/demo/unified/export/tokenizer \
        --text-tokenizer runs/demo/unified/export/llm --size 64 --steps 2000 --batch 32       # CPU, minutes

The DiT sees [caption tokens; noisy latent tokens + learned positions] with full attention, adaLN by the flow
time, and predicts each latent token's velocity (a linear out layer): no LLM, no Sem-ViT, no per-token head.
Same flow maths as the unified model (x_t = (1 - t) x0 + t eps, v = eps - x0, logit-normal times, Euler, CFG by
dropping the caption 10% of the time). If it draws the asked scenes from as many examples as the unified model
sees, the unified model's path (Sem-ViT on noisy latents, the LLM, the flow head) is what holds it back;
if it does not, the latents or the amount of training are.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.eval.prompts import CATEGORIES, prompt_set
from hydra_x.eval.shapes import generation_summary, score_generation
from hydra_x.nn.adaln import TimeEmbedding, modulate
from hydra_x.nn.flow import sample, time_from_normal
from hydra_x.tokenizer.model import HydraXTokenizer


class Block(nn.Module):
    """An adaLN-Zero transformer block with a key-padding mask over the caption slots (the tokenizer's
    flow_decoder.AdaLNBlock over hydra_x.nn.layers.Block has no such mask: its attention is by token layout)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        s1, g1, a1, s2, g2, a2 = self.modulation(F.silu(c))[:, None].chunk(6, dim=-1)
        q, k, v = self.qkv(modulate(self.norm1(x), s1, g1)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        x = x + a1 * self.proj(h.transpose(1, 2).flatten(2))
        return x + a2 * self.mlp(modulate(self.norm2(x), s2, g2))


class LatentDiT(nn.Module):
    def __init__(self, vocab: int, channels: int, tokens: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.text = nn.Embedding(vocab, width)
        self.z_in = nn.Linear(channels, width)
        self.pos = nn.Parameter(torch.randn(1, tokens + 64, width) * 0.02)
        self.time = TimeEmbedding(width, 256)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.out = nn.Linear(width, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ids, keep (B, L) caption tokens and which are real; z_t (B, N, C); t (B,) -> velocity (B, N, C)."""
        n_text = ids.shape[1]
        x = torch.cat([self.text(ids), self.z_in(z_t)], dim=1)
        x = x + self.pos[:, : x.shape[1]]
        keep = torch.cat([keep, keep.new_ones(z_t.shape[:2])], dim=1)
        c = self.time(t)
        for block in self.blocks:
            x = block(x, c, keep)
        return self.out(self.norm(x[:, n_text:]))


def captions_to_ids(text_tokenizer, captions: list[str], length: int, drop: torch.Tensor | None = None):
    ids = torch.zeros(len(captions), length, dtype=torch.long)
    keep = torch.zeros(len(captions), length, dtype=torch.bool)
    keep[:, 0] = True  # an always-present first slot (id 0): a dropped caption is this alone
    for i, caption in enumerate(captions):
        if drop is not None and drop[i]:
            continue
        toks = text_tokenizer(caption, add_special_tokens=False)["input_ids"][: length - 1]
        ids[i, 1 : 1 + len(toks)] = torch.tensor(toks)
        keep[i, 1 : 1 + len(toks)] = True
    return ids, keep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, help="a trained tokenizer folder with latent statistics")
    p.add_argument("--text-tokenizer", required=True, help="a folder or hub id with a transformers text tokenizer")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--time-mean", type=float, default=1.0)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--limit", type=int, default=24, help="held-out prompts per category")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    from transformers import AutoTokenizer

    torch.manual_seed(0)
    device = torch.device(args.device)
    tok = HydraXTokenizer.from_pretrained(args.tokenizer).to(device).eval()
    text_tok = AutoTokenizer.from_pretrained(args.text_tokenizer)
    tasks = ShapesTasks(0, "train", args.size, 5)
    with torch.no_grad():
        z = tok.encode(tasks.example("image_gen", 0).visuals[0].pixels[None].to(device))
    channels, grid = z.shape[1], z.shape[2:]
    tokens = math.prod(grid)
    length = 32
    model = LatentDiT(len(text_tok), channels, tokens, args.width, args.depth, args.heads).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    print(f"latent grid {tuple(grid)} x {channels}; DiT {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M")

    start, k = time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        examples = [tasks.example("image_gen", k + i) for i in range(args.batch)]
        k += args.batch
        with torch.no_grad():
            x = torch.stack([e.visuals[0].pixels for e in examples]).to(device)
            z0 = tok.encode(x).flatten(2).transpose(1, 2).float()  # (B, N, C)
        drop = torch.rand(args.batch) < 0.1
        ids, keep = captions_to_ids(text_tok, [e.messages[0]["content"] for e in examples], length, drop)
        t = time_from_normal(torch.randn(args.batch), mean=args.time_mean).to(device)
        noise = torch.randn_like(z0)
        z_t = (1 - t[:, None, None]) * z0 + t[:, None, None] * noise
        v = model(ids.to(device), keep.to(device), z_t, t)
        loss = F.mse_loss(v, noise - z0)
        lr = args.lr * min(1.0, step / 100)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 200 == 0 or step == args.steps:
            print(f"step {step} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s, {k} examples)")

    model.eval()
    items = prompt_set()
    scores = []
    for category in CATEGORIES:
        mine = [i for i in items.generation if i.category == category][: args.limit]
        ids_c, keep_c = captions_to_ids(text_tok, [i.prompt for i in mine], length)
        ids_u, keep_u = captions_to_ids(text_tok, [""] * len(mine), length, torch.ones(len(mine), dtype=torch.bool))
        ids2, keep2 = torch.cat([ids_c, ids_u]).to(device), torch.cat([keep_c, keep_u]).to(device)

        def velocity(z_t: torch.Tensor, t: torch.Tensor, ids2=ids2, keep2=keep2) -> torch.Tensor:
            tt = torch.cat([t, t]).float()
            v = model(ids2, keep2, torch.cat([z_t, z_t]), tt)
            v_c, v_u = v.chunk(2)
            return v_u + args.guidance * (v_c - v_u)

        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(len(mine), tokens, channels, generator=gen).to(device)
        with torch.no_grad():
            z = sample(velocity, noise, args.sample_steps)
            images = tok.decode(z.transpose(1, 2).unflatten(2, tuple(grid))).float().clamp(-1, 1).cpu()
        scores += [score_generation(item, image) for item, image in zip(mine, images)]
    summary = generation_summary(scores)
    cats = {c: round(v["accuracy"], 2) for c, v in summary["categories"].items()}
    print(f"generation overall {summary['overall']:.3f} {cats}")


if __name__ == "__main__":
    main()
