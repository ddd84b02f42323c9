"""Builders shared by the reconstruction-evaluation tests (and the torchrun test's command lines)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from PIL import Image

from hydra_x.data.video import write_video
from hydra_x.eval.models import load_hydra_x
from hydra_x.eval.protocols import resolve_protocol
from hydra_x.eval.recon import ReconOptions, evaluate
from hydra_x.eval.samples import EvalData
from hydra_x.eval.tiny import save_tiny_feature_net
from hydra_x.losses.lpips import LPIPS, save_lpips
from tests.media_fixtures import index_clip, photo_uint8

CPU = torch.device("cpu")


def tiny_nets(folder: Path) -> dict[str, str]:
    """Tiny feature nets and a random-weights LPIPS file: every metric is available offline."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    return {
        "image": f"tiny-image:{save_tiny_feature_net('image', folder / 'tiny_image.safetensors', seed=0)}",
        "video": f"tiny-video:{save_tiny_feature_net('video', folder / 'tiny_video.safetensors', seed=0)}",
        "lpips": str(save_lpips(LPIPS(), folder / "lpips_random.safetensors")),
    }


def image_folder(root: Path, bad: bool = True) -> Path:
    """Five non-square photographs (one in a subfolder), plus an empty, a corrupt and a truncated file."""
    (root / "sub").mkdir(parents=True, exist_ok=True)
    shapes = {"a.png": (40, 56), "b.png": (64, 48), "c.jpg": (48, 80), "d.png": (36, 36), "sub/e.png": (50, 70)}
    for i, (name, (h, w)) in enumerate(shapes.items()):
        photo = ("astronaut", "coffee", "chelsea", "rocket", "camera")[i]
        Image.fromarray(photo_uint8(photo, h, w)).save(root / name, quality=95)
    if bad:
        (root / "empty.png").write_bytes(b"")
        (root / "corrupt.png").write_bytes(b"not a png at all")
        good = io.BytesIO()
        Image.fromarray(photo_uint8("astronaut", 64, 64)).save(good, format="PNG")
        (root / "truncated.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    return root


def video_folder(root: Path, frames: int = 12) -> Path:
    """Three index-coded videos (frame i has grey level 8 i + 4) of different sizes, one too short, one corrupt."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(((32, 48), (40, 32), (36, 36))):
        clip = index_clip(frames, h, w)
        clip[:, :, : h // 3] = clip[:, :, : h // 3] * 0.5 + (0.2 * i)  # some structure for SSIM
        write_video(root / f"v{i}.mp4", clip, fps=10, crf=0)
    write_video(root / "short.mp4", index_clip(3, 32, 32), fps=10, crf=0)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    return root


def run(data: str, protocol: str, nets: dict[str, str], *, batch_size: int = 2, **overrides):
    """evaluate() with the tiny HYDRA-X preset and the tiny feature nets; returns (result, model, data)."""
    from hydra_x.tokenizer.io import resolve_source

    p = resolve_protocol(protocol, **overrides)
    with contextlib.redirect_stderr(io.StringIO()):  # the random-weights warning
        model = load_hydra_x(resolve_source(None, "tiny", 0, "tiny"), CPU, torch.float32)
    options = ReconOptions(batch_size=batch_size, lpips_weights=nets["lpips"], feature_net=nets[p.media])
    d = EvalData(data, p)
    return evaluate(model, d, p, options), model, d


def figures(report_metrics: dict) -> dict[str, float]:
    return {k: v["value"] for k, v in report_metrics.items() if v.get("available")}
