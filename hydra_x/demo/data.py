"""The shapes-world images (and clips) a tokenizer trains on, rendered once into a folder (an ``image_folder`` or
``video_folder`` source).

The tokenizer's data sources are files or the embedded photographs; the shapes world is the unified model's data.
Rendering a few thousand of its training scenes (those of its text-to-image and text-to-video tasks) into PNG and
MP4 files takes seconds and lets the tokenizer learn the world's colours, shapes and motions through the ordinary
folder sources. A tokenizer that never saw them reconstructs flat shapes as blocks of tokens, which caps every
generation and edit of the unified model (``hydra-x eval shapes`` reports that cap as the tokenizer round trip).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra_x.data.media import write_image
from hydra_x.data.shapes_tasks import ShapesTasks


def write_shapes_images(folder: Path, size: int, count: int, seed: int = 0) -> Path:
    """``count`` training scenes of the shapes world at ``size`` px in ``folder`` (kept if already complete)."""
    tasks = ShapesTasks(seed, "train", size, 5)
    image = lambda path, k: write_image(path, tasks.example("image_gen", k).visuals[0].pixels)  # noqa: E731
    return _write_all(folder, "png", count, image)


def write_shapes_clips(folder: Path, size: int, frames: int, count: int, seed: int = 0) -> Path:
    """``count`` training clips of the shapes world (``frames`` frames at ``size`` px; H.264 at a near-lossless
    quality, so the colours survive) in ``folder`` (kept if already complete)."""
    from hydra_x.data.video import write_video

    tasks = ShapesTasks(seed, "train", size, frames)

    def one(path: Path, k: int) -> None:
        clip = tasks.example("video_gen", k).visuals[0].pixels  # (3, F, H, W)
        write_video(path, clip, fps=8, crf=4)

    return _write_all(folder, "mp4", count, one)


def _write_all(folder: Path, suffix: str, count: int, write) -> Path:
    """``write(path, k)`` for k < ``count`` into a partial folder renamed to ``folder`` when complete."""
    if folder.is_dir() and len(list(folder.glob(f"*.{suffix}"))) == count:
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for k in range(count):
        write(partial / f"{k:06d}.{suffix}", k)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder
