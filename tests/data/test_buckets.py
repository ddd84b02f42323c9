"""Aspect-ratio buckets: sizes, and a uniform scale plus crop (never a squash)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hydra_x.data import DataConfig, SourceConfig, TokenizerDataLoader
from hydra_x.data.buckets import cover_size, make_buckets, nearest_bucket
from hydra_x.data.media import read_image
from tests.media_fixtures import photo_uint8


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_bucket_set(size):
    buckets = make_buckets(size, 16)
    assert (size, size) in buckets and 5 <= len(buckets) <= 9
    ratios = [w / h for h, w in buckets]
    assert ratios == sorted(ratios) and min(ratios) >= 0.45 and max(ratios) <= 2.2
    for h, w in buckets:
        assert h % 16 == 0 and w % 16 == 0
        assert abs(h * w / size**2 - 1) < 0.15
    assert make_buckets(size, 16, aspect=False) == ((size, size),)
    assert nearest_bucket(100, 200, buckets) == len(buckets) - 1  # 2:1 landscape
    assert nearest_bucket(300, 150, buckets) == 0  # 1:2 portrait
    assert buckets[nearest_bucket(77, 77, buckets)] == (size, size)


def by_hand(path, bucket):
    """Uniform scale to cover the bucket, then a centre crop: what the loader must do."""
    x = read_image(path)
    h, w = x.shape[-2:]
    scale = max(bucket[0] / h, bucket[1] / w)
    size = (max(bucket[0], round(h * scale)), max(bucket[1], round(w * scale)))
    assert abs(size[1] / size[0] - w / h) < 0.05  # the aspect ratio is kept
    y = F.interpolate(x[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0].clamp(-1, 1)
    top, left = (size[0] - bucket[0]) // 2, (size[1] - bucket[1]) // 2
    return y[:, top : top + bucket[0], left : left + bucket[1]]


def test_wide_images_are_scaled_and_cropped_not_squashed(tmp_path):
    Image.fromarray(photo_uint8("rocket", 60, 120)).save(tmp_path / "two_to_one.png")  # 2:1
    Image.fromarray(photo_uint8("coffee", 50, 150)).save(tmp_path / "three_to_one.png")  # 3:1, wider than any bucket
    Image.fromarray(photo_uint8("chelsea", 150, 70)).save(tmp_path / "tall.png")
    cfg = DataConfig(
        sources=(SourceConfig("image_folder", str(tmp_path)),),
        image_size=64,
        image_batch_size=1,
        random_crop=False,
        hflip=False,
        num_workers=0,
    )
    loader = TokenizerDataLoader(cfg)
    it = iter(loader)
    seen = {}
    while len(seen) < 3:
        batch = next(it)
        seen[batch.keys[0].rsplit("/", 1)[-1]] = batch.pixels[0]
    assert seen["two_to_one.png"].shape == (3, 48, 96)  # exactly 2:1: scaled by 0.8, nothing cropped
    assert seen["three_to_one.png"].shape == (3, 48, 96)  # scaled to 48x144, centre 96 columns kept
    assert seen["tall.png"].shape == (3, 96, 48)
    for name, x in seen.items():
        expected = by_hand(tmp_path / name, tuple(x.shape[-2:]))
        torch.testing.assert_close(x, expected, atol=1e-6, rtol=0)
    # A squash of the 3:1 image to 48x96 would be different.
    squash = F.interpolate(read_image(tmp_path / "three_to_one.png")[None], size=(48, 96), mode="bicubic",
                           antialias=True, align_corners=False)[0].clamp(-1, 1)  # fmt: skip
    assert (squash - seen["three_to_one.png"]).abs().mean() > 0.05


def test_cover_size_keeps_the_aspect_ratio():
    rng = np.random.default_rng(0)
    buckets = make_buckets(256)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(16, 3000, 2))
        b = buckets[nearest_bucket(h, w, buckets)]
        ch, cw = cover_size(h, w, b)
        assert ch >= b[0] and cw >= b[1] and (ch == b[0] or cw == b[1])
        assert abs(math.log(cw / ch) - math.log(w / h)) < 2 / min(ch, cw) + 1e-9
