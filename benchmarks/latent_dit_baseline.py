"""A reference point for the unified model's text-to-image: a plain in-context DiT trained on the same
tokenizer's latents of the same shapes world, scored by the same scorer on the same held-out prompts.

    python benchmarks/latent_dit_baseline.py --tokenizer runs/demo/unified/export/tokenizer \
        --text-tokenizer runs/demo/unified/export/llm --size 64 --steps 2000 --batch 32       # CPU, minutes
    python3 benchmarks/latent_dit_baseline.py --tokenizer R/tokenizer/export --text-tokenizer LLM_FOLDER \
        --size 128 --batch 256 --width 384 --depth 8 --heads 6 --minutes 10 --eval-at 800 \
        --device cuda --json dit.json --grid dit.png                                           # one GPU

The DiT sees [caption tokens; noisy latent tokens + learned positions] with full attention, adaLN by the flow
time, and predicts each latent token's velocity (a linear out layer): no LLM, no Sem-ViT, no per-token head.
Same flow maths as the unified model (x_t = (1 - t) x0 + t eps, v = eps - x0, logit-normal times, Euler, CFG by
dropping the caption 10% of the time). If it draws the asked scenes from as many examples as the unified model
sees, the unified model's path (Sem-ViT on noisy latents, the LLM, the flow head) is what holds it back;
if it does not, the latents or the amount of training are. ``--pixels PATCH`` puts raw pixel patches in the
latents' place (the same token grid, no encoder or decoder) to tell those two apart; ``--predict x`` has the out
layer predict the clean tokens, turned into the velocity the loss and the sampler use (JiT's choice for
high-dimensional tokens).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.data.shapes import render_image
from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.eval.prompts import CATEGORIES, prompt_set
from hydra_x.eval.shapes import generation_summary, score_generation
from hydra_x.eval.shapes_report import picture_grid
from hydra_x.eval.shapes_run import Picture
from hydra_x.nn.adaln import TimeEmbedding, modulate
from hydra_x.nn.flow import prior_noise, sample, shift_time, time_from_normal, velocity_from_clean
from hydra_x.tokenizer.latent_stats import measure_latent_stats
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


def sincos_2d(width: int, h: int, w: int) -> torch.Tensor:
    """(h w, width) fixed positions of an h x w grid, row-major: half the channels sin / cos of the row at
    geometric frequencies, half of the column (DiT's and MAE's 2D sin-cos embedding)."""
    if width % 4:
        raise ValueError(f"2D sin-cos positions need a width divisible by 4, got {width}")
    freqs = 1.0 / 10000 ** (torch.arange(width // 4) / (width // 4))
    rows, cols = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    angle = lambda pos: pos.reshape(-1, 1) * freqs  # noqa: E731
    return torch.cat([angle(rows).sin(), angle(rows).cos(), angle(cols).sin(), angle(cols).cos()], dim=1)


class LatentDiT(nn.Module):
    def __init__(
        self,
        vocab: int,
        channels: int,
        tokens: int,
        width: int,
        depth: int,
        heads: int,
        predict: str = "velocity",
        grid: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.predict = predict
        self.text = nn.Embedding(vocab, width)
        self.z_in = nn.Linear(channels, width)
        self.pos = nn.Parameter(torch.randn(1, tokens + 64, width) * 0.02)
        # fixed 2D sin-cos positions of the latent grid (DiT's), added to the learnt ones; None: learnt alone
        self.register_buffer("grid_pos", None if grid is None else sincos_2d(width, *grid[-2:]), persistent=False)
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
        if self.grid_pos is not None:
            x[:, n_text:] = x[:, n_text:] + self.grid_pos
        keep = torch.cat([keep, keep.new_ones(z_t.shape[:2])], dim=1)
        c = self.time(t)
        for block in self.blocks:
            x = block(x, c, keep)
        out = self.out(self.norm(x[:, n_text:]))
        return velocity_from_clean(z_t, t, out.to(z_t)) if self.predict == "x" else out


class PixelPatches(nn.Module):
    """The tokenizer's interface over raw pixels: a ``patch`` x ``patch`` patch of the picture is one token of
    3 patch^2 channels, scaled by one mean and std measured on training scenes. The control for the latents: the
    same DiT on the same token grid with no encoder or decoder between it and the pixels."""

    def __init__(self, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.register_buffer("stats", torch.tensor([0.0, 1.0]))
        self.config = argparse.Namespace(latent_channels=3 * patch * patch)

    def measure(self, pixels: torch.Tensor) -> None:
        self.stats = torch.stack([pixels.mean(), pixels.std()]).to(self.stats)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3 p^2, 1, H / p, W / p), normalised."""
        z = F.pixel_unshuffle((x.float() - self.stats[0]) / self.stats[1], self.patch)
        return z.unsqueeze(2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(z.squeeze(2), self.patch) * self.stats[1] + self.stats[0]


class Batches(torch.utils.data.Dataset):
    """Batch ``i`` of the training stream: pixels (B, 3, H, W), caption ids and keep mask (10% dropped, for CFG),
    rendered in DataLoader workers: beside training runs that hold the host's cores, one process rendering and
    tokenising 256 scenes a step made 87 steps in 10 minutes on the GPU machine."""

    def __init__(self, size: int, batch: int, text_tokenizer, length: int) -> None:
        self.size, self.batch, self.text_tokenizer, self.length = size, batch, text_tokenizer, length
        self.tasks = ShapesTasks(0, "train", size, 5)

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, i: int):
        examples = [self.tasks.example("image_gen", i * self.batch + j) for j in range(self.batch)]
        drop = torch.rand(self.batch, generator=torch.Generator().manual_seed(i)) < 0.1
        captions = [e.messages[0]["content"] for e in examples]
        ids, keep = captions_to_ids(self.text_tokenizer, captions, self.length, drop)
        return torch.stack([e.visuals[0].pixels for e in examples]), ids, keep


def block_noise(white: torch.Tensor, grid, share: float, cells: int, generator=None) -> torch.Tensor:
    """Unit Gaussian noise (B, N, C) whose share ``share`` of the variance is one draw per cell of a ``cells`` x
    ``cells`` grid over the latent grid (neighbouring tokens share it), the rest ``white`` (B, N, C): a prior whose
    chance fluctuations, which decide where objects go, are as large as objects rather than one token each."""
    if not share:
        return white
    b, _, c = white.shape
    # The unified model's block noise (all shared) over a one-step latent grid, as the DiT's token rows (B, N, C).
    coarse = prior_noise((b, c, 1, *grid[-2:]), 1.0, cells, generator).to(white).flatten(2).transpose(1, 2)
    return (1 - share) ** 0.5 * white + share**0.5 * coarse


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


@torch.no_grad()
def evaluate(model, tok, text_tok, grid, args, device, autocast) -> tuple[dict, list[list[Picture]]]:
    """The held-out prompts (``args.limit`` a category) drawn with Euler and CFG, scored; and a grid's rows (truth |
    sample) of the first four of each category."""
    model.eval()
    items = prompt_set()
    tokens, channels, length = math.prod(grid), tok.config.latent_channels, 32
    scores, rows = [], []
    for category in CATEGORIES:
        mine = [i for i in items.generation if i.category == category][: args.limit]
        ids_c, keep_c = captions_to_ids(text_tok, [i.prompt for i in mine], length)
        ids_u, keep_u = captions_to_ids(text_tok, [""] * len(mine), length, torch.ones(len(mine), dtype=torch.bool))
        ids2, keep2 = torch.cat([ids_c, ids_u]).to(device), torch.cat([keep_c, keep_u]).to(device)

        def velocity(z_t: torch.Tensor, t: torch.Tensor, ids2=ids2, keep2=keep2) -> torch.Tensor:
            with autocast():
                v = model(ids2, keep2, torch.cat([z_t, z_t]), torch.cat([t, t]).float()).float()
            v_c, v_u = v.chunk(2)
            return v_u + args.guidance * (v_c - v_u)

        gen = torch.Generator().manual_seed(0)
        white = torch.randn(len(mine), tokens, channels, generator=gen)
        noise = block_noise(white, grid, args.block_noise, args.noise_cells, gen).to(device)
        z = sample(velocity, noise, args.sample_steps, shift=args.shift)
        images = tok.decode(z.transpose(1, 2).unflatten(2, tuple(grid))).float().clamp(-1, 1).cpu()
        mine_scores = [score_generation(item, image) for item, image in zip(mine, images)]
        scores += mine_scores
        rows.append(
            [
                Picture(f"{s.id} {'ok' if s.correct else 'x'}", (render_image(item.scene, args.size, args.size), image))
                for s, item, image in list(zip(mine_scores, mine, images))[:4]
            ]
        )
    model.train()
    return generation_summary(scores), rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    space = p.add_mutually_exclusive_group(required=True)
    space.add_argument("--tokenizer", help="a trained tokenizer folder (latent statistics measured if none)")
    space.add_argument(
        "--pixels", type=int, metavar="PATCH", help="no tokenizer: PATCH x PATCH pixel patches are the tokens"
    )
    p.add_argument("--text-tokenizer", required=True, help="a folder or hub id with a transformers text tokenizer")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=2000, help="at most this many steps")
    p.add_argument(
        "--minutes", type=float, default=0.0, help="also stop after this many minutes (training and --eval-at; 0: none)"
    )
    p.add_argument("--eval-at", type=int, nargs="*", default=[], help="also score the prompts after these steps")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--time-mean", type=float, default=1.0)
    p.add_argument(
        "--positions",
        choices=("learnt", "sincos"),
        default="learnt",
        help="latent tokens' positions: learnt alone (from a 0.02 start), or with fixed 2D sin-cos ones added (DiT's)",
    )
    p.add_argument(
        "--predict",
        choices=("velocity", "x"),
        default="velocity",
        help="what the out layer predicts; x is turned into the velocity that the loss and the sampler use (JiT)",
    )
    p.add_argument(
        "--shift", type=float, default=1.0, help="time shift toward the noise, in training and sampling alike (SD3's)"
    )
    p.add_argument(
        "--block-noise", type=float, default=0.0, help="share of the noise's variance shared by neighbouring tokens"
    )
    p.add_argument("--noise-cells", type=int, default=4, help="cells a side of the shared part (block_noise)")
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--limit", type=int, default=24, help="held-out prompts per category")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers rendering the batches")
    p.add_argument("--threads", type=int, help="torch's CPU threads in the training process (default: torch's)")
    p.add_argument("--json", type=Path, help="write the scores here")
    p.add_argument("--grid", type=Path, help="write a PNG of truths and samples (four a category) here")
    args = p.parse_args()
    if not 0 <= args.block_noise <= 1 or args.noise_cells < 1:
        p.error(f"--block-noise is a share in [0, 1], --noise-cells >= 1: got {args.block_noise}, {args.noise_cells}")
    if args.pixels is not None and (args.pixels < 1 or args.size % args.pixels):
        p.error(f"--pixels must be a patch size that divides --size {args.size}, got {args.pixels}")

    from transformers import AutoTokenizer

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # bf16 on a GPU (the unified runs' precision there), fp32 on the CPU
    autocast = (lambda: torch.autocast("cuda", torch.bfloat16)) if device.type == "cuda" else nullcontext
    text_tok = AutoTokenizer.from_pretrained(args.text_tokenizer)
    tasks = ShapesTasks(0, "train", args.size, 5)
    scenes = lambda b: [tasks.example("image_gen", 10**6 + 64 * b + i).visuals[0].pixels for i in range(64)]  # noqa: E731
    if args.pixels is not None:
        tok = PixelPatches(args.pixels).to(device)
        tok.measure(torch.cat([torch.stack(scenes(b)) for b in range(4)]))
    else:
        tok = HydraXTokenizer.from_pretrained(args.tokenizer).to(device).eval()
    if args.tokenizer and not tok.has_latent_stats:  # as a unified run does: one scale over 256 generation targets
        targets = (torch.stack(scenes(b)) for b in range(4))
        tok.set_latent_stats(*measure_latent_stats(tok, targets, device, shared_std=True, all_processes=False))
    with torch.no_grad():
        z = tok.encode(tasks.example("image_gen", 0).visuals[0].pixels[None].to(device))
    channels, grid = z.shape[1], z.shape[2:]
    tokens = math.prod(grid)
    length = 32
    model = LatentDiT(
        len(text_tok),
        channels,
        tokens,
        args.width,
        args.depth,
        args.heads,
        args.predict,
        tuple(grid) if args.positions == "sincos" else None,
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    print(f"latent grid {tuple(grid)} x {channels}; DiT {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M")

    results, rows = [], []
    batches = iter(
        torch.utils.data.DataLoader(
            Batches(args.size, args.batch, text_tok, length),
            batch_size=None,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            prefetch_factor=4 if args.workers else None,
            persistent_workers=args.workers > 0,
        )
    )
    start, k, step = time.perf_counter(), 0, 0
    while step < args.steps and not (args.minutes and time.perf_counter() - start > 60 * args.minutes):
        step += 1
        x, ids, keep = next(batches)
        k += args.batch
        with torch.no_grad():
            z0 = tok.encode(x.to(device, non_blocking=True)).flatten(2).transpose(1, 2).float()  # (B, N, C)
        t = shift_time(time_from_normal(torch.randn(args.batch), mean=args.time_mean), args.shift).to(device)
        noise = block_noise(torch.randn_like(z0), grid, args.block_noise, args.noise_cells)
        z_t = (1 - t[:, None, None]) * z0 + t[:, None, None] * noise
        with autocast():
            v = model(ids.to(device), keep.to(device), z_t, t)
        loss = F.mse_loss(v.float(), noise - z0)
        lr = args.lr * min(1.0, step / 100)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 200 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s, {k} examples)", flush=True)
        if step in args.eval_at:
            summary, rows = evaluate(model, tok, text_tok, grid, args, device, autocast)
            results.append({"step": step, "examples": k, "seconds": time.perf_counter() - start, **summary})
            print(f"step {step}: generation overall {summary['overall']:.3f}", flush=True)
    summary, rows = evaluate(model, tok, text_tok, grid, args, device, autocast)
    results.append({"step": step, "examples": k, "seconds": time.perf_counter() - start, **summary})
    for r in results:
        cats = {c: round(v["accuracy"], 2) for c, v in r["categories"].items()}
        share = "-" if r["asked_colour_share"] is None else f"{r['asked_colour_share']:.0%}"  # None: nothing read
        print(
            f"step {r['step']} ({r['examples']} examples, {r['seconds']:.0f} s): generation overall {r['overall']:.3f} "
            f"{cats}; objects per picture {r['objects_per_image']:.2f} (asked {r['asked_per_image']:.2f}), "
            f"in an asked colour {share}"
        )
    if args.json:
        settings = {key: str(value) for key, value in vars(args).items()}
        args.json.write_text(json.dumps({"args": settings, "results": results}, indent=1))
    if args.grid:
        from PIL import Image

        Image.fromarray(picture_grid(rows)).save(args.grid)


if __name__ == "__main__":
    main()
