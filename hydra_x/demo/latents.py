"""The scale of the latents the unified model generates: measured on shapes-world images, stored in the tokenizer.

The unified model's flow runs in the tokenizer's normalised latent space (``HydraXTokenizer.normalize``), whose
statistics the tokenizer's stage 3 measures on its data. The demo trains stage 1 only, so its raw latents keep
whatever scale training gave them; on shapes-world images most channels vary far less than the unit noise the flow
starts from, which drowns what a prompt should change. The demo therefore measures the per-channel mean and the
overall standard deviation of the latents of shapes-world training images, stores them with ``set_latent_stats``
(which re-parameterises the decoder and the Sem-ViT's input so both compute exactly what they did) and saves that
tokenizer beside the run's export, as the unified model's start. Reconstructions are unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.demo.config import NORMALISED as FOLDER  # inside the tokenizer's run: --retrain removes it with the run
from hydra_x.tokenizer import HydraXTokenizer


@torch.no_grad()
def shapes_latent_stats(tokenizer: HydraXTokenizer, image_size: int, samples: int, seed: int = 0):
    """(per-channel mean, per-channel std) of the raw latents of ``samples`` shapes-world training images; the std
    is the one over all channels, so channels keep their relative scale."""
    tasks = ShapesTasks(seed, "train", image_size, 5)
    images = torch.stack([tasks.example("image_gen", k).visuals[0].pixels for k in range(samples)])
    raw = torch.cat([tokenizer.encode(chunk) for chunk in images.split(64)])  # statistics unset: raw latents
    c = raw.shape[1]
    mean = raw.mean(dim=(0, 2, 3, 4))
    std = (raw - mean.view(1, c, 1, 1, 1)).std().clamp_min(1e-4)
    return mean, std.expand(c).clone()


def normalised_tokenizer(run_dir: Path, image_size: int, samples: int = 256) -> Path:
    """``run_dir/shapes-normalised``: the run's export with latent statistics of shapes-world images (made once;
    an export whose statistics are set already is copied as it is)."""
    out = run_dir / FOLDER
    if (out / "config.json").is_file():
        return out
    tokenizer = HydraXTokenizer.from_pretrained(run_dir / "export").eval()
    if torch.all(tokenizer.latent_mean == 0) and torch.all(tokenizer.latent_std == 1):  # else set (stage 3): kept
        tokenizer.set_latent_stats(*shapes_latent_stats(tokenizer, image_size, samples))
    partial = out.with_name(FOLDER + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer.save_pretrained(partial)
    partial.rename(out)
    return out
