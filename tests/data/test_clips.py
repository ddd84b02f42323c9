"""Clip sampling from real video files whose frames encode their index as brightness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hydra_x.data import DataConfig, SourceConfig, TokenizerDataLoader
from hydra_x.data.folders import ClipSpec, SampleError, decode_clip
from hydra_x.data.video import write_video
from tests.media_fixtures import VIDEO_FRAMES, frame_index, index_clip, photo_uint8, write_vfr

KEEP = lambda h, w: lambda x: x  # noqa: E731  (no resize, no crop)


def clips(folder, steps: int = 6, **kw) -> list[list[int]]:
    cfg = DataConfig(
        sources=(SourceConfig("video_folder", str(folder)),), image_size=32, video_batch_size=2, num_workers=0, **kw
    )
    it = iter(TokenizerDataLoader(cfg))
    return [frame_index(x) for _ in range(steps) for x in next(it).pixels]


def test_frame_stride(video_dir):
    got = clips(video_dir, clip_frames=5, frame_stride=3)
    for idx in got:
        assert np.diff(idx).tolist() == [3, 3, 3, 3], idx
        assert idx[0] >= 0 and idx[-1] < VIDEO_FRAMES
    assert len({idx[0] for idx in got}) > 3  # random starts


def test_fps_resampling(video_dir):  # the videos are 25 fps
    for idx in clips(video_dir, clip_frames=5, fps=12.5):
        assert np.diff(idx).tolist() == [2, 2, 2, 2], idx
    for idx in clips(video_dir, clip_frames=9, fps=50.0):
        assert idx == [idx[0] + k // 2 for k in range(9)], idx  # each frame twice
    for idx in clips(video_dir, clip_frames=5, fps=10.0):  # 2.5 source frames per output frame
        assert idx == [idx[0] + int(k * 2.5) for k in range(5)], idx
    for idx in clips(video_dir, clip_frames=5, fps=12.5, steps=20):
        assert idx[-1] < VIDEO_FRAMES


def test_exact_timestamps_and_variable_frame_rate(tmp_path):
    cfr = tmp_path / "cfr.mp4"
    write_video(cfr, index_video(30), 25)
    assert frame_index(decode_clip(cfr, "cfr", ClipSpec(5, 2), 0.0, KEEP)) == [0, 2, 4, 6, 8]
    assert frame_index(decode_clip(cfr, "cfr", ClipSpec(5, 2), 0.999, KEEP)) == [21, 23, 25, 27, 29]
    assert frame_index(decode_clip(cfr, "cfr", ClipSpec(30, 1, 25.0), 0.7, KEEP)) == list(range(30))
    # Frame timestamps in ms; at 10 fps each target time shows the last frame shown by then.
    pts = [0, 40, 80, 200, 240, 400, 440, 480, 520, 1000, 1040, 1080]
    for suffix in (".mp4", ".mkv"):
        vfr = tmp_path / f"vfr{suffix}"
        write_vfr(vfr, pts)
        got = frame_index(decode_clip(vfr, "vfr", ClipSpec(11, 1, 10.0), 0.0, KEEP))
        assert got == [0, 2, 3, 4, 5, 7, 8, 8, 8, 8, 9], suffix
        # A later start: the same rule from there (the clip spans 1 s of the 1.12 s file).
        later = frame_index(decode_clip(vfr, "vfr", ClipSpec(6, 1, 5.0), 1.0, KEEP))
        rate = 75 / 7 if suffix == ".mp4" else 25.0  # average rate the container states
        t0 = np.floor((1.12 - 1 / rate - 1.0) * rate + 1e-6) / rate  # the latest start, on the rate's grid
        expected = [max(i for i, p in enumerate(pts) if p <= (t0 + k / 5.0) * 1000 + 0.1) for k in range(6)]
        assert later == expected, suffix
        with pytest.raises(SampleError) as err:
            decode_clip(vfr, "vfr", ClipSpec(9, 1, 5.0), 0.0, KEEP)
        assert err.value.category == "too_short"
    # Through the loader: only frames that exist, in time order.
    for idx in clips(tmp_path, steps=3, clip_frames=5, fps=8.0):
        assert idx == sorted(idx) and all(0 <= i < 30 for i in idx)


def index_video(frames: int) -> torch.Tensor:
    return index_clip(frames, 32, 32)


def test_same_crop_and_flip_for_every_frame(tmp_path):
    still = torch.from_numpy(photo_uint8("astronaut", 60, 120)).permute(2, 0, 1).float() / 127.5 - 1
    write_video(tmp_path / "still.mp4", still[:, None].expand(3, 12, 60, 120).contiguous(), 25, crf=0)
    cfg = DataConfig(
        sources=(SourceConfig("video_folder", str(tmp_path)),),
        image_size=32,
        clip_frames=5,
        video_batch_size=4,
        num_workers=0,
    )
    batch = next(iter(TokenizerDataLoader(cfg)))
    assert batch.pixels.shape == (4, 3, 5, 32, 48)  # 60x120 (2:1): scaled to 32x64, cropped to 32x48
    for clip in batch.pixels:
        assert (clip - clip[:, :1]).abs().max() < 0.03  # a still video: every frame cropped alike
    firsts = batch.pixels[:, :, 0]
    assert any(not torch.allclose(firsts[0], f, atol=0.05) for f in firsts[1:])  # crops / flips differ
