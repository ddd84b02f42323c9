"""The data stream: determinism, exact resume, rank slicing, mixing weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hydra_x.data import Batch, DataConfig, SourceConfig, TokenizerDataLoader, step_kinds
from hydra_x.data.loader import step_sources


def take(loader: TokenizerDataLoader, n: int) -> list[Batch]:
    it = iter(loader)
    return [next(it) for _ in range(n)]


def assert_same(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.step, x.kind, x.keys, x.source) == (y.step, y.kind, y.keys, y.source)
        assert torch.equal(x.pixels, y.pixels), f"step {x.step}: pixels differ"


def check_shapes(batches: list[Batch], cfg: DataConfig) -> None:
    for b in batches:
        n = cfg.batch_size(b.kind)
        assert b.pixels.dtype == torch.float32 and b.pixels.shape[0] == n and b.pixels.shape[1] == 3
        if b.kind == "video":
            assert b.pixels.ndim == 5 and b.pixels.shape[2] == cfg.clip_frames
        else:
            assert b.pixels.ndim == 4
        h, w = b.pixels.shape[-2:]
        assert h % cfg.size_multiple == 0 and w % cfg.size_multiple == 0
        assert 0.4 * cfg.image_size**2 < h * w < 1.6 * cfg.image_size**2
        assert b.pixels.min() >= -1 and b.pixels.max() <= 1
        assert len(b.keys) == n


def config(sources, **kw) -> DataConfig:
    base = dict(image_size=64, clip_frames=5, image_batch_size=3, video_batch_size=2, num_workers=0, seed=1)
    base.update(kw)
    return DataConfig(sources=tuple(sources), **base)


@pytest.fixture(scope="module")
def all_sources(image_dir, video_dir, image_shards, video_shards):
    return {
        "embedded": [SourceConfig("embedded_images"), SourceConfig("embedded_videos")],
        "image_folder": [SourceConfig("image_folder", str(image_dir))],
        "video_folder": [SourceConfig("video_folder", str(video_dir))],
        "image_shards": [SourceConfig("image_shards", str(image_shards))],
        "video_shards": [SourceConfig("video_shards", str(video_shards / "videos-{000000..000003}.tar"))],
    }


def resume_check(cfg: DataConfig, k: int, m: int) -> dict:
    reference = take(TokenizerDataLoader(cfg), k + m)
    check_shapes(reference, cfg)
    first = TokenizerDataLoader(cfg)
    assert_same(take(first, k), reference[:k])
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    assert state["step"] == k
    resumed = TokenizerDataLoader(cfg, start_step=k, state=state)
    assert_same(take(resumed, m), reference[k:])
    return state


@pytest.mark.parametrize("kind", ["embedded", "image_folder", "video_folder", "image_shards", "video_shards"])
def test_resume_equality_each_source(all_sources, kind):
    state = resume_check(config(all_sources[kind]), k=5, m=4)
    if kind == "image_shards":
        # Samples were waiting in bucket queues at the save: the replay path was taken.
        (stream,) = state["slots"]["0"].values()
        assert stream["base_seq"] < stream["end_seq"]


def test_resume_equality_all_sources_two_workers(all_sources):
    sources = [s for group in all_sources.values() for s in group]
    cfg = config(sources, num_workers=2)
    state = resume_check(cfg, k=9, m=7)
    assert set(state["slots"]) == {"0", "1"}  # one shard position per worker slot
    kinds = {b.source.split(":")[0] for b in take(TokenizerDataLoader(cfg), 16)}
    assert len(kinds) >= 4  # the steps drew from most of the sources


def test_map_style_same_batches_with_any_worker_count(all_sources):
    sources = all_sources["embedded"] + all_sources["image_folder"] + all_sources["video_folder"]
    a = take(TokenizerDataLoader(config(sources, num_workers=0)), 6)
    b = take(TokenizerDataLoader(config(sources, num_workers=2, mp_context="spawn")), 6)
    assert_same(a, b)


def test_deterministic_and_seeded(all_sources):
    sources = all_sources["embedded"] + all_sources["image_folder"]
    a = take(TokenizerDataLoader(config(sources)), 4)
    assert_same(a, take(TokenizerDataLoader(config(sources)), 4))
    c = take(TokenizerDataLoader(config(sources, seed=2)), 4)
    assert any(x.kind != y.kind or not torch.equal(x.pixels, y.pixels) for x, y in zip(a, c))


def test_start_step_without_state_for_map_style(all_sources):
    sources = all_sources["embedded"] + all_sources["video_folder"]
    reference = take(TokenizerDataLoader(config(sources)), 7)
    assert_same(take(TokenizerDataLoader(config(sources), start_step=4), 3), reference[4:])


def test_a_second_iter_continues(all_sources):
    cfg = config(all_sources["image_shards"])
    reference = take(TokenizerDataLoader(cfg), 6)
    loader = TokenizerDataLoader(cfg)
    got = take(loader, 2) + take(loader, 4)
    assert_same(got, reference)
    assert loader.step == 6


def test_rank_slices_cover_the_global_batch(all_sources):
    sources = all_sources["embedded"] + all_sources["image_folder"] + all_sources["video_folder"]
    single = take(TokenizerDataLoader(config(sources, image_batch_size=4, video_batch_size=2)), 6)
    ranks = [
        take(TokenizerDataLoader(config(sources, image_batch_size=2, video_batch_size=1), r, 2), 6) for r in (0, 1)
    ]
    for whole, r0, r1 in zip(single, *ranks):
        assert whole.kind == r0.kind == r1.kind  # every rank runs the same model parts
        assert r0.keys + r1.keys == whole.keys
        assert torch.equal(torch.cat([r0.pixels, r1.pixels]), whole.pixels)
    # Resumed on another world size with the same global batch: the same sample stream continues.
    late = take(TokenizerDataLoader(config(sources, image_batch_size=2, video_batch_size=1), 1, 2, start_step=4), 2)
    for whole, part in zip(single[4:], late):
        n = part.pixels.shape[0]
        assert part.keys == whole.keys[n:] and torch.equal(part.pixels, whole.pixels[n:])


def test_mixing_weights():
    cfg = DataConfig(sources=(SourceConfig("embedded_images", weight=3), SourceConfig("embedded_videos", weight=1)))
    kinds = step_kinds(cfg, np.arange(20000))
    assert abs(kinds.count("image") / len(kinds) - 0.75) < 0.015
    three = DataConfig(
        sources=(
            SourceConfig("embedded_images", weight=5),
            SourceConfig("embedded_videos", weight=0),
            SourceConfig("embedded_videos", weight=3),
            SourceConfig("embedded_images", weight=2),
        )
    )
    freq = np.bincount(step_sources(three, np.arange(20000)), minlength=4) / 20000
    assert freq[1] == 0
    np.testing.assert_allclose(freq, [0.5, 0.0, 0.3, 0.2], atol=0.015)
    # Kinds alternate (image-only and video-only batches), and the loader follows the plan.
    small = config([SourceConfig("embedded_images", weight=3), SourceConfig("embedded_videos", weight=1)])
    batches = take(TokenizerDataLoader(small), 12)
    assert [b.kind for b in batches] == step_kinds(small, range(12))
    assert {"image", "video"} <= set(step_kinds(small, range(12)))


def test_state_checks(all_sources):
    cfg = config(all_sources["image_shards"])
    loader = TokenizerDataLoader(cfg)
    take(loader, 3)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="saved at step 3"):
        TokenizerDataLoader(cfg, start_step=2, state=state)
    with pytest.warns(UserWarning, match="restart at the beginning of epoch"):
        other = TokenizerDataLoader(cfg, rank=1, world_size=2, start_step=3, state=state)
    check_shapes(take(other, 3), cfg)
    with pytest.warns(UserWarning, match="without a saved data state"):
        TokenizerDataLoader(cfg, start_step=3)


@pytest.mark.gpu
@pytest.mark.parametrize("workers", [0, 2])
def test_pinned_batches_are_the_same_batches(all_sources, workers):
    """A CUDA run gets page-locked batches (asynchronous copies to the GPU) with the same content."""
    cfg = config(all_sources["embedded"], num_workers=workers)
    pinned = take(TokenizerDataLoader(cfg, pin_memory=True), 4)
    assert all(b.pixels.is_pinned() for b in pinned)
    assert_same(pinned, take(TokenizerDataLoader(cfg), 4))


def test_each_source_batches_at_its_own_size_and_resumes_exactly(all_sources, image_dir, image_shards):
    # The same photographs at three sizes (folder, shards, embedded) beside clips at the config's: every batch is
    # at its source's size, the stream resumes exactly, and a change of a source's size is told on resume.
    sources = [
        SourceConfig("image_folder", str(image_dir), image_size=32),
        SourceConfig("image_shards", str(image_shards), image_size=48),
        SourceConfig("embedded_images", image_size=96),
        SourceConfig("embedded_videos"),
    ]
    cfg = config(sources, aspect_buckets=False, num_workers=2)
    batches = take(TokenizerDataLoader(cfg), 16)
    sides: dict[str, set] = {}
    for b in batches:
        sides.setdefault(b.source, set()).add(tuple(b.pixels.shape[-2:]))
    assert sides == {
        sources[0].name: {(32, 32)},
        sources[1].name: {(48, 48)},
        "embedded_images": {(96, 96)},
        "embedded_videos": {(64, 64)},
    }
    first = TokenizerDataLoader(cfg)
    assert_same(take(first, 5), batches[:5])
    state = json.loads(json.dumps(first.state_dict()))
    assert_same(take(TokenizerDataLoader(cfg, start_step=5, state=state), 11), batches[5:])
    assert [s[-1] for s in state["sources"]] == [32, 48, 96, None]  # the fingerprint names a source's own size
    moved = config(
        [SourceConfig("image_folder", str(image_dir), image_size=48), *sources[1:]], aspect_buckets=False, num_workers=2
    )
    with pytest.warns(UserWarning, match="the data sources differ from the saved state's"):
        TokenizerDataLoader(moved, start_step=5, state=state)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (40, r"data source image_folder:x: image_size \(40\) must be a multiple of size_multiple \(16\)"),
        (0, "a source's image_size must be None or a positive integer, got 0 for image_folder:x"),
        (True, "a source's image_size must be None or a positive integer, got True"),
    ],
)
def test_a_source_size_the_patches_cannot_tile_is_refused(size, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(sources=(SourceConfig("image_folder", "x", image_size=size),))
