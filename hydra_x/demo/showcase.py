"""What the report shows beside the figures: pictures written into the report folder, grouped in galleries.

Reconstructions of held-out photographs (original | reconstruction, PNG) and clips (side by side, animated GIF),
images and clips generated for the preset's fixed prompts (each captioned with what the shapes scorer reads in
it), and the first answered questions and edits of the shapes evaluation (its own outputs, not computed again).
Pictures are enlarged with nearest-neighbour pixels so that 64 px samples stay readable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hydra_x.data.embedded import heldout_clip, heldout_image
from hydra_x.data.media import write_image
from hydra_x.data.shapes import render_image
from hydra_x.data.video import write_video
from hydra_x.demo.config import DemoConfig
from hydra_x.eval.metrics import psnr, video_psnr
from hydra_x.eval.shapes_read import read_objects
from hydra_x.eval.shapes_run import ShapesReport
from hydra_x.train.visualize import clip_side_by_side
from hydra_x.unified.sampling import generate_latents, render

ASSETS = "assets"  # pictures live in <report>/assets/, referenced relatively
GIF_FPS = 6


@dataclass
class Tile:
    path: str  # relative to the report folder
    caption: str
    note: str = ""
    ok: bool | None = None  # a check's outcome, where there is one


@dataclass
class Gallery:
    title: str
    text: str
    tiles: list[Tile] = field(default_factory=list)


def enlarge(x: torch.Tensor, display_px: int) -> torch.Tensor:
    """(3, [F,] H, W) -> nearest-neighbour enlarged by the integer factor that brings H closest to display_px (the
    height: pictures shown side by side keep one picture's height)."""
    k = max(1, round(display_px / x.shape[-2]))
    return x.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1) if k > 1 else x


def pair(a: torch.Tensor, b: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """Images (3, H, W) side by side with a white gap."""
    return torch.cat([a, torch.ones(3, a.shape[-2], gap), b], dim=-1)


class Writer:
    """Writes pictures into the report's assets folder and returns their paths relative to the report."""

    def __init__(self, report_dir: Path, display_px: int) -> None:
        self.folder = report_dir / ASSETS
        self.folder.mkdir(parents=True, exist_ok=True)
        self.display_px = display_px

    def image(self, name: str, x: torch.Tensor) -> str:
        write_image(self.folder / f"{name}.png", enlarge(x.float().clamp(-1, 1), self.display_px))
        return f"{ASSETS}/{name}.png"

    def clip(self, name: str, x: torch.Tensor) -> str:
        write_video(self.folder / f"{name}.gif", enlarge(x.float().clamp(-1, 1), self.display_px), fps=GIF_FPS)
        return f"{ASSETS}/{name}.gif"


def reads_as(image: torch.Tensor) -> str:
    """What the shapes scorer reads in a generated image, in words."""
    found = read_objects(image)
    return "reads as: " + (", ".join(f"{o.kind[0]} {o.kind[1]}" for o in found) if found else "nothing")


@torch.no_grad()
def reconstructions(cfg: DemoConfig, tokenizer, w: Writer, tick: Callable[[], None]) -> list[Gallery]:
    """Held-out photographs and clips through the tokenizer: original | reconstruction, with their PSNR."""
    s, size = cfg.showcase, cfg.eval.recon_size
    weight = next(tokenizer.parameters())
    dev, dtype = weight.device, weight.dtype
    photos = Gallery("Photographs", f"Held-out photographs ({size} px): original | reconstruction.")
    for k in range(s.photos):
        name, x = heldout_image(k, size)
        y = tokenizer.decode(tokenizer.encode(x[None].to(dev, dtype))).float().clamp(-1, 1).cpu()[0]
        p = float(psnr(x[None], y[None])[0])
        photos.tiles.append(Tile(w.image(f"photo_{k}", pair(x, y)), name, f"PSNR {p:.2f} dB"))
        tick()
    clips = Gallery("Clips", f"Held-out clips ({cfg.eval.recon_frames} frames): original | reconstruction.")
    for k in range(s.clips):
        name, x = heldout_clip(k, cfg.eval.recon_frames, size)
        y = tokenizer.decode(tokenizer.encode(x[None].to(dev, dtype)), video=True).float().clamp(-1, 1).cpu()[0]
        p = float(video_psnr(x[None], y[None])[0])
        clips.tiles.append(Tile(w.clip(f"clip_{k}", clip_side_by_side(x, y)), name, f"PSNR {p:.2f} dB"))
        tick()
    return [photos, clips]


@torch.no_grad()
def generations(cfg: DemoConfig, model, w: Writer, tick: Callable[[], None]) -> list[Gallery]:
    """Images and clips generated for the preset's fixed prompts, in one batch each."""
    s, e = cfg.showcase, cfg.eval
    opts = dict(height=e.shapes_size, width=e.shapes_size, steps=e.steps, guidance=e.guidance, seed=s.seed)
    images = Gallery("Generated images", f"Fixed prompts, {e.steps} steps, guidance {e.guidance:g}, seed {s.seed}.")
    if s.image_prompts:
        z = generate_latents(model, list(s.image_prompts), "image", sampler="euler", **opts)
        for k, (prompt, x) in enumerate(zip(s.image_prompts, render(model, z, seed=s.seed))):
            images.tiles.append(Tile(w.image(f"generated_{k}", x), prompt, reads_as(x)))
        tick()
    clips = Gallery("Generated clips", f"Fixed prompts, {e.shapes_frames} frames.")
    if s.video_prompts and model.config.video:
        z = generate_latents(model, list(s.video_prompts), "video", frames=e.shapes_frames, sampler="euler", **opts)
        for k, (prompt, x) in enumerate(zip(s.video_prompts, render(model, z, seed=s.seed))):
            clips.tiles.append(Tile(w.clip(f"generated_clip_{k}", x), prompt))
        tick()
    return [images, clips]


def answers_and_edits(cfg: DemoConfig, result: ShapesReport, w: Writer) -> list[Gallery]:
    """The first answered questions and the first edit of each operation, from the shapes evaluation."""
    size, s = result.settings.get("question_size") or cfg.eval.shapes_size, cfg.showcase  # the picture asked about
    scenes = {i.id: i.scene for i in result.prompt_set.questions}
    qa = Gallery("Questions", "Held-out scenes and questions; the model's answer (greedy) against the truth.")
    for k, r in enumerate(result.understanding[: s.questions]):
        path = w.image(f"question_{k}", render_image(scenes[r.id], size, size))
        qa.tiles.append(Tile(path, r.question, f"answer: {r.reply!r} (truth: {r.answer})", r.correct))
    edits = Gallery("Edits", "Held-out edits: source | output | target.")
    items = {i.id: i for i in result.prompt_set.edits}
    shown: set[str] = set()
    for score in result.editing or []:
        item = items[score.id]
        if item.sample.op in shown or len(edits.tiles) >= s.edits:
            continue
        shown.add(item.sample.op)
        pictures = [p for row in result.pictures.get("editing", []) for p in row if p.label.split()[0] == score.id]
        if pictures:
            source, out, target = pictures[0].images
            path = w.image(f"edit_{item.sample.op}", pair(pair(source, out), target))
            edits.tiles.append(Tile(path, item.sample.instruction, item.sample.op, score.success))
    return [g for g in (qa, edits) if g.tiles]
