"""Evaluation protocols: named presets that pin how samples are made and which metrics are reported.

Numbers from different papers rarely agree because each uses its own crop, size and sample count. A
protocol fixes all of them, and the report carries it verbatim, so two reports are comparable exactly when
their protocols are equal.

    image256      resize the short side to 256 (bicubic, antialiased), centre crop 256 x 256;
                  PSNR, SSIM, LPIPS, rFID (Inception features of originals vs reconstructions)
    video17x256   the first 17 decoded frames (stride 1: native frame rate), each resized and centre
                  cropped as above; per-frame PSNR and SSIM averaged over the clip, LPIPS on frames,
                  rFVD (I3D features of clips)

Users may override the size, the frame count, the frame stride and the number of samples; the protocol's
name then records the overrides (``image256+size=128``), so a changed protocol never passes as a preset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from hydra_x.data.buckets import resize_crop

RESIZE_RULE = (
    "resize the short side to `size` (bicubic, antialiased, aspect kept, clamped to [-1, 1]; as "
    "hydra_x.data.media.resize_short_side / Pillow's antialiased resize), then centre crop size x size "
    "(offsets floor((H - size) / 2), floor((W - size) / 2))"
)
CLIP_RULE = "the first `frames` decoded frames taking every `frame_stride`-th one from the first (stride 1: native fps)"


@dataclass(frozen=True)
class Protocol:
    name: str
    media: str  # "image" | "video"
    size: int  # square side after resize + centre crop
    metrics: tuple[str, ...]  # psnr, ssim, lpips and rfid (images) or rfvd (videos)
    frames: int | None = None  # videos: frames per clip
    frame_stride: int = 1
    max_samples: int | None = None  # None: every sample of the data set
    preprocessing: str = RESIZE_RULE
    clip_sampling: str | None = None
    pixel_range: str = "[-1, 1]; PSNR and SSIM with data_range 2 (as 0..255 with range 255)"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = list(self.metrics)
        return out

    @property
    def frechet(self) -> str:
        """The Frechet metric of this protocol: 'rfid' or 'rfvd'."""
        return "rfid" if self.media == "image" else "rfvd"

    def describe(self) -> str:
        what = f"{self.size}x{self.size}" if self.media == "image" else f"{self.frames}x{self.size}x{self.size}"
        stride = f", stride {self.frame_stride}" if self.media == "video" and self.frame_stride != 1 else ""
        limit = f", first {self.max_samples} samples" if self.max_samples else ""
        return f"{self.name}: {self.media}s {what}{stride}{limit}; {', '.join(self.metrics)}"


PROTOCOLS: dict[str, Protocol] = {
    "image256": Protocol("image256", "image", 256, ("psnr", "ssim", "lpips", "rfid")),
    "video17x256": Protocol(
        "video17x256", "video", 256, ("psnr", "ssim", "lpips", "rfvd"), frames=17, clip_sampling=CLIP_RULE
    ),
}


def resolve_protocol(
    name: str,
    *,
    size: int | None = None,
    frames: int | None = None,
    frame_stride: int | None = None,
    max_samples: int | None = None,
) -> Protocol:
    """A preset with user overrides; each override is appended to the name (``video17x256+frames=9``)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    base = PROTOCOLS[name]
    changes: dict[str, Any] = {}
    for field, value in (("size", size), ("frames", frames), ("frame_stride", frame_stride)):
        if value is None or value == getattr(base, field):
            continue
        if value < 1:
            raise ValueError(f"--{field.replace('_', '-')} must be at least 1, got {value}")
        if field != "size" and base.media != "video":
            raise ValueError(f"--{field.replace('_', '-')} applies to video protocols only, not to {name}")
        changes[field] = value
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"--max-samples must be at least 1, got {max_samples}")
    suffix = "".join(f"+{k}={v}" for k, v in changes.items())
    return replace(base, name=base.name + suffix, max_samples=max_samples, **changes)


def preprocess(x: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) or (3, F, H, W) in [-1, 1] -> resized short side + centre crop (3, [F,] size, size).

    The uniform scale that makes the picture cover size x size is the short-side resize, so the data
    pipeline's resize_crop with a centred square crop is exactly this protocol's rule.
    """
    return resize_crop(x, (size, size), crop=None, flip=False)
