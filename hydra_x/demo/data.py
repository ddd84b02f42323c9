"""The shapes-world images the demo's tokenizer trains on, rendered once into a folder (an ``image_folder`` source).

The tokenizer's data sources are files or the embedded photographs; the shapes world is the unified model's data.
Rendering a few thousand of its training scenes (those of its text-to-image task) into PNG files takes seconds and
lets the tokenizer learn the world's colours and shapes through the ordinary folder source.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra_x.data.media import write_image
from hydra_x.data.shapes_tasks import ShapesTasks


def write_shapes_images(folder: Path, size: int, count: int, seed: int = 0) -> Path:
    """``count`` training scenes of the shapes world at ``size`` px in ``folder`` (kept if already complete)."""
    if folder.is_dir() and len(list(folder.glob("*.png"))) == count:
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tasks = ShapesTasks(seed, "train", size, 5)
    for k in range(count):
        write_image(partial / f"{k:06d}.png", tasks.example("image_gen", k).visuals[0].pixels)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder
