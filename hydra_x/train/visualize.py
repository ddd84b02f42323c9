"""Held-out reconstructions as pictures: a PNG grid for images, a side-by-side GIF and PNG strip for clips."""

from __future__ import annotations

from pathlib import Path

import torch

from hydra_x.data.media import write_image
from hydra_x.data.video import write_video


def image_grid(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) x2 -> (3, 2H, B*W): originals on top, reconstructions below."""
    top = torch.cat(list(originals), dim=-1)
    bottom = torch.cat(list(reconstructions), dim=-1)
    return torch.cat((top, bottom), dim=-2).clamp(-1, 1)


def clip_side_by_side(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(3, F, H, W) x2 -> (3, F, H, 2W): original left, reconstruction right."""
    return torch.cat((original, reconstruction), dim=-1).clamp(-1, 1)


def clip_strip(original: torch.Tensor, reconstruction: torch.Tensor, frames: int = 5) -> torch.Tensor:
    """(3, F, H, W) x2 -> (3, 2H, frames*W): evenly spaced frames, originals on top."""
    idx = torch.linspace(0, original.shape[1] - 1, min(frames, original.shape[1])).round().long()
    return image_grid(original[:, idx].transpose(0, 1), reconstruction[:, idx].transpose(0, 1))


def save_heldout_pictures(
    folder: Path,
    step: int,
    images: tuple[torch.Tensor, torch.Tensor] | None,
    clips: tuple[torch.Tensor, torch.Tensor] | None,
) -> list[Path]:
    """Write step-numbered pictures of (originals, reconstructions); return the PNG paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if images is not None:
        written.append(write_image(folder / f"images_{step:08d}.png", image_grid(*(t.float().cpu() for t in images))))
    if clips is not None:
        originals, recs = (t.float().cpu() for t in clips)
        strips = torch.cat([clip_strip(o, r) for o, r in zip(originals, recs)], dim=-2)
        written.append(write_image(folder / f"clips_{step:08d}.png", strips))
        side = torch.cat([clip_side_by_side(o, r) for o, r in zip(originals, recs)], dim=-2)
        write_video(folder / f"clips_{step:08d}.gif", side, fps=8)
    return written
