"""Aspect-ratio buckets, the resize-and-crop that fits a sample into one, and the data's random numbers.

A bucket is an (H, W) pair with about ``image_size**2`` pixels and sides multiple of the patch size, for a
small fixed set of aspect ratios from 1:2 to 2:1. A sample goes to the bucket nearest its aspect ratio
(in log space) and is scaled uniformly until it covers the bucket, then cropped: never squashed.

Randomness: every random choice of the data pipeline comes from counter-based hashing of integers
(seed, a tag, step or sample index, ...) and never from global RNG state or worker identity, so a batch
is a pure function of the config and the global step.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
import torch.nn.functional as F

# Width : height ratios of the buckets (1:2 portrait .. 2:1 landscape).
ASPECT_RATIOS = (1 / 2, 9 / 16, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9, 2.0)

Bucket = tuple[int, int]  # (H, W)


def make_buckets(image_size: int, multiple: int = 16, aspect: bool = True) -> tuple[Bucket, ...]:
    """The bucket set: (H, W) pairs with about image_size**2 pixels, sides multiples of ``multiple``.

    Sorted by aspect ratio (portrait first); the square (image_size, image_size) is always in it.
    Ratios that round to the same sizes at small image sizes collapse into one bucket.
    """
    if not aspect:
        return ((image_size, image_size),)
    area = image_size * image_size
    out: list[Bucket] = []
    for r in ASPECT_RATIOS:
        h = max(multiple, round(math.sqrt(area / r) / multiple) * multiple)
        w = max(multiple, round(math.sqrt(area * r) / multiple) * multiple)
        if r == 1.0:
            h = w = image_size
        if abs(math.log(w / h / r)) > math.log(1.25):  # rounding to the multiple moved it too far (tiny sizes)
            continue
        if (h, w) not in out:
            out.append((h, w))
    return tuple(sorted(out, key=lambda b: b[1] / b[0]))


def nearest_bucket(height: int, width: int, buckets: tuple[Bucket, ...]) -> int:
    """Index of the bucket whose aspect ratio is nearest (in log ratio) to height x width; ties: the first."""
    a = math.log(width / height)
    errors = [abs(a - math.log(w / h)) for h, w in buckets]
    return int(np.argmin(errors))


def cover_size(height: int, width: int, bucket: Bucket) -> tuple[int, int]:
    """(H, W) after the uniform scale that makes height x width just cover ``bucket``."""
    bh, bw = bucket
    scale = max(bh / height, bw / width)
    return max(bh, round(height * scale)), max(bw, round(width * scale))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) or (3, F, H, W) -> same at ``size`` (bicubic, antialiased when shrinking, clamped to [-1, 1])."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    frames = x.unsqueeze(0) if x.ndim == 3 else x.transpose(0, 1)  # (N, 3, H, W)
    out = F.interpolate(frames, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(-1, 1)
    return out[0] if x.ndim == 3 else out.transpose(0, 1)


def crop_offsets(height: int, width: int, bucket: Bucket, u: tuple[float, float] | None) -> tuple[int, int]:
    """Top-left corner of a ``bucket`` crop in a height x width array: centred (u None) or at fractions u."""
    dy, dx = height - bucket[0], width - bucket[1]
    if u is None:
        return dy // 2, dx // 2
    return min(dy, int(u[0] * (dy + 1))), min(dx, int(u[1] * (dx + 1)))


def resize_crop(
    x: torch.Tensor, bucket: Bucket, crop: tuple[float, float] | None = None, flip: bool = False
) -> torch.Tensor:
    """Fit (3, H, W) or (3, F, H, W) into ``bucket``: uniform scale to cover it, crop, optional h-flip.

    ``crop`` is a pair of fractions in [0, 1) placing the crop (None: centre); every frame of a clip gets
    the same crop and flip.
    """
    size = cover_size(x.shape[-2], x.shape[-1], bucket)
    x = resize(x, size)
    top, left = crop_offsets(size[0], size[1], bucket, crop)
    x = x[..., top : top + bucket[0], left : left + bucket[1]]
    if flip:
        x = x.flip(-1)
    return x.contiguous()


class FrameFitter:
    """The same resize-crop-flip for every frame of a clip, applied frame by frame as frames are decoded."""

    def __init__(self, height: int, width: int, bucket: Bucket, crop: tuple[float, float] | None, flip: bool):
        self.bucket, self.flip = bucket, flip
        self.size = cover_size(height, width, bucket)
        self.top, self.left = crop_offsets(self.size[0], self.size[1], bucket, crop)

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:  # (3, H, W) -> (3, bh, bw)
        x = resize(frame, self.size)[:, self.top : self.top + self.bucket[0], self.left : self.left + self.bucket[1]]
        return (x.flip(-1) if self.flip else x).contiguous()


# ---------------------------------------------------------------------------- counter-based random numbers

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
    return x ^ (x >> np.uint64(31))


def hash_uniform(*parts: int | np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) hashed from integers (broadcast over arrays): the same on every machine."""
    with np.errstate(over="ignore"):
        h = np.zeros(np.broadcast_shapes(*(np.shape(p) for p in parts)) or (1,), dtype=np.uint64)
        for p in parts:
            h = _splitmix(h ^ _splitmix(np.asarray(p, dtype=np.int64).astype(np.uint64)))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def sample_rng(*parts: int) -> np.random.Generator:
    """A NumPy generator seeded by a tuple of non-negative integers (seed, tag, indices ...)."""
    return np.random.default_rng([int(p) for p in parts])


def name_id(text: str) -> int:
    """A stable integer for a name (shard file, sample key), for seeding."""
    return zlib.crc32(text.encode("utf-8", "surrogateescape"))


def augment_params(rng: np.random.Generator, random_crop: bool, hflip: bool) -> tuple[tuple[float, float] | None, bool]:
    """(crop fractions or None for a centre crop, flip) drawn from a sample's generator."""
    u = rng.random(3)
    return ((float(u[0]), float(u[1])) if random_crop else None), bool(hflip and u[2] < 0.5)
