"""The embedded data set: no download, deterministic, a held-out split that training never touches."""

from __future__ import annotations

import time

import torch

from hydra_x.data import (
    HELDOUT_PHOTOS,
    TRAIN_PHOTOS,
    DataConfig,
    SourceConfig,
    TokenizerDataLoader,
    heldout_clips,
    heldout_images,
)
from hydra_x.data.buckets import make_buckets
from hydra_x.data.embedded import EmbeddedSource, photo


def test_photos_load_offline_and_split_is_disjoint():
    assert not set(TRAIN_PHOTOS) & set(HELDOUT_PHOTOS)
    for name in TRAIN_PHOTOS + HELDOUT_PHOTOS:
        x = photo(name)
        assert x.dtype == torch.uint8 and x.shape[0] == 3 and min(x.shape[1:]) >= 170


def test_training_samples_never_use_heldout_photos():
    cfg = DataConfig(image_size=32, clip_frames=5, seed=3)
    used = set()
    for media in ("image", "video"):
        source = EmbeddedSource(media, 0, cfg, make_buckets(32))
        for p in range(150 if media == "image" else 40):
            key, x = source.sample(p % len(source.buckets), p, 0)
            used.add(key.split("/")[2])
    assert used <= set(TRAIN_PHOTOS) and len(used) >= 10
    it = iter(TokenizerDataLoader(DataConfig(image_size=32, clip_frames=5, num_workers=0)))
    for _ in range(10):
        for key in next(it).keys:
            assert key.split("/")[2] in TRAIN_PHOTOS


def test_samples_are_deterministic_and_fast():
    cfg = DataConfig(image_size=64, clip_frames=9, image_batch_size=8, video_batch_size=2)
    source = EmbeddedSource("video", 1, cfg, make_buckets(64))
    a, b = source.sample(2, 17, 0), source.sample(2, 17, 0)
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], source.sample(2, 18, 0)[1])
    clip = a[1]
    assert clip.shape == (3, 9, 64, 64) and clip.min() >= -1 and clip.max() <= 1
    steps = (clip[:, 1:] - clip[:, :-1]).abs().mean(dim=(0, 2, 3))
    assert (steps > 1e-3).all() and (steps < 0.5).all()  # it moves, smoothly
    cfg = DataConfig(
        sources=(SourceConfig("embedded_images", weight=1), SourceConfig("embedded_videos", weight=1)),
        image_size=64,
        clip_frames=9,
        num_workers=0,
    )
    it = iter(TokenizerDataLoader(cfg))
    next(it)  # warm: photographs loaded once per process
    times, kinds = {"image": [], "video": []}, []
    for _ in range(8):
        start = time.perf_counter()
        kinds.append(next(it).kind)
        times[kinds[-1]].append(time.perf_counter() - start)
    assert {"image", "video"} <= set(kinds)
    # 8 images of 64^2 or 2 clips of 9 x 64^2: well under a second (best of a few: the CPU may be shared).
    assert min(times["image"]) < 0.2 and min(times["video"]) < 0.2, times


def test_heldout_sets_are_fixed():
    images = heldout_images(4, 64)
    assert images.shape == (4, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert torch.equal(images, heldout_images(4, 64))
    assert torch.equal(images[:2], heldout_images(2, 64))  # the k-th sample depends on k only
    clips = heldout_clips(3, 9, 32)
    assert clips.shape == (3, 3, 9, 32, 32)
    assert torch.equal(clips, heldout_clips(3, 9, 32))
    assert not torch.equal(clips[0], clips[1])
    # Independent of the training seed, and unlike any training sample of the same size.
    train = next(iter(TokenizerDataLoader(DataConfig(image_size=64, aspect_buckets=False, num_workers=0, seed=9))))
    assert train.pixels.shape[-2:] == images.shape[-2:]
    assert all(not torch.equal(h, t) for h in images for t in train.pixels)
