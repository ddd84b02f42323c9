"""The embedded data set: needs no download, built at run time from the photographs scikit-image ships.

Images are crops of a photograph at a random position and scale (from native resolution to a quarter of
the widest crop that fits), fitted to the batch's bucket. Clips are a camera move over a photograph (a pan,
a zoom in or out, or both; eased or linear; sub-pixel bilinear sampling from an antialiased pyramid level)
with a few moving procedural objects on top (discs and rotating squares, flat colours, bouncing or
swinging paths, antialiased edges). A sample is a pure function of (seed, bucket group, position).

Held-out split: the photographs ``chelsea`` (a cat, colour), ``coffee`` (a cup, colour) and ``gravel``
(a texture, grey) never appear in training samples; :func:`heldout_images` and :func:`heldout_clips` make
fixed crops and clips of them (independent of the training seed), for evaluation during training.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from hydra_x.data.buckets import Bucket, sample_rng
from hydra_x.data.config import DataConfig

# Real photographs bundled in scikit-image's wheel (no network; the synthetic ones are left out).
TRAIN_PHOTOS = (
    "astronaut",
    "rocket",
    "camera",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle",
    "page",
    "text",
    "moon",
    "retina",
    "grass",
    "brick",
    "cell",
    "clock",
)
HELDOUT_PHOTOS = ("chelsea", "coffee", "gravel")
HELDOUT_SEED = 20260613  # held-out crops and clips do not depend on the training seed
_TAG_IMAGE, _TAG_CLIP, _TAG_HELDOUT_IMAGE, _TAG_HELDOUT_CLIP = 21, 22, 23, 24


def _load(name: str) -> np.ndarray:
    from skimage import data  # imported here: only the embedded set needs scikit-image

    arr = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


@functools.cache
def photo(name: str) -> torch.Tensor:
    """A bundled photograph as (3, H, W) uint8 (grey ones replicated to three channels)."""
    if name not in TRAIN_PHOTOS + HELDOUT_PHOTOS:
        raise KeyError(f"unknown embedded photograph {name!r}")
    return torch.from_numpy(_load(name)).permute(2, 0, 1).contiguous()


def _signed(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


def _scale_range(h: int, w: int, bucket: Bucket) -> tuple[float, float]:
    """Range of source pixels per output pixel: from native resolution (or the widest crop, for small
    photographs) to the widest crop that fits, at most 4x apart."""
    k_max = min(h / bucket[0], w / bucket[1])
    return max(min(1.0, k_max), k_max / 4), k_max


def photo_crop(name: str, bucket: Bucket, rng: np.random.Generator, flip_ok: bool = True) -> torch.Tensor:
    """A random crop of a photograph at a random scale, resized to ``bucket``: (3, bh, bw) in [-1, 1]."""
    img = photo(name)
    h, w = img.shape[1:]
    lo, hi = _scale_range(h, w, bucket)
    k = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    ch, cw = min(h, max(1, round(k * bucket[0]))), min(w, max(1, round(k * bucket[1])))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    x = _signed(img[:, top : top + ch, left : left + cw])
    x = F.interpolate(x[None], size=bucket, mode="bicubic", antialias=True, align_corners=False)[0].clamp_(-1, 1)
    if flip_ok and rng.random() < 0.5:
        x = x.flip(-1)
    return x.contiguous()


def _camera_path(h: int, w: int, bucket: Bucket, frames: int, rng: np.random.Generator):
    """Per-frame (scale k, centre y, centre x) of a camera move over an h x w photograph."""
    lo, hi = _scale_range(h, w, bucket)
    move = ("pan", "zoom_in", "zoom_out", "pan_zoom")[int(rng.integers(4))]
    if move == "pan":
        k0 = k1 = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        factor = min(rng.uniform(1.15, 1.8), hi / lo)  # a small photograph leaves little room to zoom
        big = math.exp(rng.uniform(math.log(lo * factor), math.log(hi))) if lo * factor < hi else hi
        k0, k1 = big, big / factor
        if move == "zoom_out" or (move == "pan_zoom" and rng.random() < 0.5):
            k0, k1 = k1, k0

    def centre(k: float, frac: np.ndarray) -> np.ndarray:  # a centre keeping a k-scaled bucket inside
        half = np.array([k * bucket[0] / 2, k * bucket[1] / 2])
        return half + frac * np.maximum(np.array([h, w]) - 2 * half, 0)

    c0 = centre(k0, rng.random(2))
    if move in ("pan", "pan_zoom"):
        # Travel up to about half the view, in a random direction, kept inside the photograph.
        angle = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.15, 0.5) * k0 * np.array(bucket, dtype=np.float64)
        target = c0 + dist * np.array([math.sin(angle), math.cos(angle)])
        lo_c, hi_c = centre(k1, np.zeros(2)), centre(k1, np.ones(2))
        c1 = np.clip(target, lo_c, hi_c)
    else:
        c1 = np.clip(c0, centre(k1, np.zeros(2)), centre(k1, np.ones(2)))
    s = np.linspace(0.0, 1.0, frames)
    if rng.random() < 0.5:
        s = s * s * (3 - 2 * s)  # eased in and out
    k = k0 * (k1 / k0) ** s
    c = c0[None] + (c1 - c0)[None] * s[:, None]
    return k, c[:, 0], c[:, 1]


def _render_objects(clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Draw 1-3 moving discs / rotating squares over (3, F, H, W) clip frames (antialiased edges)."""
    _, n, hh, ww = clip.shape
    yy = torch.arange(hh, dtype=torch.float32)[None, :, None] + 0.5
    xx = torch.arange(ww, dtype=torch.float32)[None, None, :] + 0.5
    t = np.arange(n, dtype=np.float64)
    for _ in range(int(rng.integers(1, 4))):
        size = rng.uniform(0.05, 0.16) * min(hh, ww)
        colour = torch.tensor(rng.uniform(-1, 1, 3), dtype=torch.float32)
        p0 = rng.uniform(size, [hh - size, ww - size])
        if rng.random() < 0.6:  # straight lines bouncing off the frame's edges
            v = rng.normal(0, 0.04 * min(hh, ww), 2)
            pos = p0[None] + v[None] * t[:, None]
            span = np.array([hh, ww]) - 2 * size
            rel = np.mod(pos - size, 2 * np.maximum(span, 1e-6))
            pos = size + np.where(rel > span, 2 * span - rel, rel)
        else:  # a smooth swing around a point
            amp = rng.uniform(0.05, 0.25, 2) * np.array([hh, ww])
            freq = rng.uniform(0.05, 0.3, 2) * 2 * math.pi
            phase = rng.uniform(0, 2 * math.pi, 2)
            pos = p0[None] + amp[None] * np.sin(freq[None] * t[:, None] + phase[None])
        py = torch.tensor(pos[:, 0], dtype=torch.float32)[:, None, None]
        px = torch.tensor(pos[:, 1], dtype=torch.float32)[:, None, None]
        if rng.random() < 0.5:
            dist = torch.sqrt((yy - py) ** 2 + (xx - px) ** 2) - size
        else:
            theta = torch.tensor(rng.uniform(0, math.pi) + rng.normal(0, 0.08) * t, dtype=torch.float32)
            cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
            u, v = (yy - py) * cos - (xx - px) * sin, (yy - py) * sin + (xx - px) * cos
            dist = torch.maximum(u.abs(), v.abs()) - size * 0.85
        alpha = (0.5 - dist).clamp_(0, 1)[None]  # (1, F, H, W)
        clip = clip * (1 - alpha) + colour[:, None, None, None] * alpha
    return clip


def photo_clip(name: str, bucket: Bucket, frames: int, rng: np.random.Generator, flip_ok: bool = True) -> torch.Tensor:
    """A camera move over a photograph with moving objects on top: (3, F, bh, bw) in [-1, 1]."""
    img = photo(name)
    h, w = img.shape[1:]
    k, cy, cx = _camera_path(h, w, bucket, frames, rng)
    bh, bw = bucket
    # Sample from the pyramid level where the finest scale is 1-2 source pixels per output pixel.
    level = max(0, math.floor(math.log2(max(float(k.min()), 1.0))))
    # Only the region the camera sees, converted and shrunk.
    y0 = max(0, math.floor(float(np.min(cy - k * bh / 2))) - 2)
    y1 = min(h, math.ceil(float(np.max(cy + k * bh / 2))) + 2)
    x0 = max(0, math.floor(float(np.min(cx - k * bw / 2))) - 2)
    x1 = min(w, math.ceil(float(np.max(cx + k * bw / 2))) + 2)
    region = _signed(img[:, y0:y1, x0:x1])[None]  # (1, 3, h', w')
    f = 2**level
    if level:
        size = (max(1, round((y1 - y0) / f)), max(1, round((x1 - x0) / f)))
        region = F.interpolate(region, size=size, mode="bilinear", antialias=True, align_corners=False)
    rh, rw = region.shape[-2:]
    sy, sx = (y1 - y0) / rh, (x1 - x0) / rw  # source pixels per region pixel
    oy = torch.arange(bh, dtype=torch.float64) + 0.5 - bh / 2  # (bh,) output offsets from the centre
    ox = torch.arange(bw, dtype=torch.float64) + 0.5 - bw / 2
    kt = torch.from_numpy(k)[:, None]
    ys = (torch.from_numpy(cy)[:, None] + oy[None] * kt - y0) / sy  # (F, bh) region coordinates
    xs = (torch.from_numpy(cx)[:, None] + ox[None] * kt - x0) / sx  # (F, bw)
    gy = (2 * ys / rh - 1).float()[:, :, None].expand(frames, bh, bw)
    gx = (2 * xs / rw - 1).float()[:, None, :].expand(frames, bh, bw)
    grid = torch.stack([gx, gy], dim=-1)  # (F, bh, bw, 2)
    out = F.grid_sample(
        region.expand(frames, -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # (F, 3, bh, bw)
    clip = _render_objects(out.transpose(0, 1), rng).clamp_(-1, 1)
    if flip_ok and rng.random() < 0.5:
        clip = clip.flip(-1)
    return clip.contiguous()


class EmbeddedSource:
    """A map-style source of endless embedded samples (images or clips) for every bucket; never fails."""

    def __init__(self, media: str, source_id: int, cfg: DataConfig, buckets: tuple[Bucket, ...]):
        self.media, self.sid, self.cfg = media, source_id, cfg
        self.name = f"embedded_{media}s"
        self.buckets = list(buckets)
        self.group_weights = np.ones(len(buckets), dtype=np.float64)

    def sample(self, group: int, position: int, attempt: int) -> tuple[str, torch.Tensor]:
        tag = _TAG_IMAGE if self.media == "image" else _TAG_CLIP
        rng = sample_rng(self.cfg.seed, tag, self.sid, group, position, attempt)
        name = TRAIN_PHOTOS[int(rng.integers(len(TRAIN_PHOTOS)))]
        bucket = self.buckets[group]
        if self.media == "image":
            x = photo_crop(name, bucket, rng, flip_ok=self.cfg.hflip)
        else:
            x = photo_clip(name, bucket, self.cfg.clip_frames, rng, flip_ok=self.cfg.hflip)
        return f"embedded/{self.media}/{name}/{group}-{position}", x


def heldout_photo(k: int) -> str:
    """The photograph of the k-th held-out image and of the k-th held-out clip (they take turns)."""
    return HELDOUT_PHOTOS[k % len(HELDOUT_PHOTOS)]


def heldout_image(k: int, size: int) -> tuple[str, torch.Tensor]:
    """The k-th held-out image: (photo name, (3, size, size)); depends only on (k, size)."""
    photo = heldout_photo(k)
    rng = sample_rng(HELDOUT_SEED, _TAG_HELDOUT_IMAGE, size, k)
    return photo, photo_crop(photo, (size, size), rng, flip_ok=False)


def heldout_clip(k: int, frames: int, size: int) -> tuple[str, torch.Tensor]:
    """The k-th held-out clip: (photo name, (3, frames, size, size)), camera moves and objects over a held-out photo."""
    photo = heldout_photo(k)
    rng = sample_rng(HELDOUT_SEED, _TAG_HELDOUT_CLIP, size, frames, k)
    return photo, photo_clip(photo, (size, size), frames, rng, flip_ok=False)


def heldout_images(n: int, size: int) -> torch.Tensor:
    """(n, 3, size, size): the first n held-out images (see heldout_image)."""
    out = [heldout_image(k, size)[1] for k in range(n)]
    return torch.stack(out) if out else torch.empty(0, 3, size, size)


def heldout_clips(n: int, frames: int, size: int) -> torch.Tensor:
    """(n, 3, frames, size, size): the first n held-out clips (see heldout_clip)."""
    out = [heldout_clip(k, frames, size)[1] for k in range(n)]
    return torch.stack(out) if out else torch.empty(0, 3, frames, size, size)
