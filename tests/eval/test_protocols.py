"""Protocols and evaluation data: presets, overrides, resize + centre crop, deterministic finite items."""

import pytest
import torch

from hydra_x.data.embedded import heldout_clips, heldout_images
from hydra_x.data.media import resize_short_side
from hydra_x.eval.protocols import PROTOCOLS, preprocess, resolve_protocol
from hydra_x.eval.samples import DataSpecError, EvalData, Sample, Skipped
from tests.eval.recon_fixtures import image_folder, video_folder
from tests.media_fixtures import frame_index


def test_presets_pin_size_frames_and_metrics():
    image, video = PROTOCOLS["image256"], PROTOCOLS["video17x256"]
    assert (image.media, image.size, image.metrics) == ("image", 256, ("psnr", "ssim", "lpips", "rfid"))
    assert (video.media, video.size, video.frames, video.frame_stride) == ("video", 256, 17, 1)
    assert video.metrics == ("psnr", "ssim", "lpips", "rfvd")
    assert resolve_protocol("image256") == image  # no override: the preset itself, name unchanged


def test_overrides_are_recorded_in_the_name_and_checked():
    p = resolve_protocol("video17x256", size=64, frames=9, frame_stride=2, max_samples=10)
    assert (p.size, p.frames, p.frame_stride, p.max_samples) == (64, 9, 2, 10)
    assert p.name == "video17x256+size=64+frames=9+frame_stride=2"
    assert p.to_dict()["name"] == p.name and p.to_dict()["metrics"] == list(p.metrics)
    with pytest.raises(ValueError, match="unknown protocol 'image512'"):
        resolve_protocol("image512")
    with pytest.raises(ValueError, match="--frames applies to video protocols only"):
        resolve_protocol("image256", frames=5)
    with pytest.raises(ValueError, match="--size must be at least 1"):
        resolve_protocol("image256", size=0)
    with pytest.raises(ValueError, match="--max-samples must be at least 1"):
        resolve_protocol("image256", max_samples=0)


def test_preprocess_resizes_the_short_side_and_crops_the_centre():
    # 64 x 96: black bands in the outer 8 columns, a white middle. Short side 64 -> 32: 32 x 48, and the
    # centre crop keeps columns 8..40 of it = source columns 16..80: all white, the bands are cut away.
    x = torch.ones(3, 64, 96)
    x[..., :8] = -1
    x[..., 88:] = -1
    y = preprocess(x, 32)
    assert y.shape == (3, 32, 32)
    assert torch.allclose(y, torch.ones_like(y), atol=1e-6)
    # Equal to the short-side resize of media.py followed by slicing the centre; tall images too.
    g = torch.Generator().manual_seed(0)
    for h, w in ((64, 96), (90, 40), (33, 33)):
        x = torch.rand(3, h, w, generator=g) * 2 - 1
        r = resize_short_side(x, 24)
        top, left = (r.shape[1] - 24) // 2, (r.shape[2] - 24) // 2
        assert torch.equal(preprocess(x, 24), r[:, top : top + 24, left : left + 24])
    clip = torch.rand(3, 4, 40, 60, generator=g) * 2 - 1  # clips: every frame the same way
    out = preprocess(clip, 16)
    for f in range(4):
        assert torch.equal(out[:, f], preprocess(clip[:, f], 16))


def test_embedded_items_are_the_heldout_set_in_order():
    p = resolve_protocol("image256", size=32, max_samples=4)
    items = list(EvalData("embedded", p).items())
    assert [s.index for s in items] == [0, 1, 2, 3]
    assert torch.equal(torch.stack([s.x for s in items]), heldout_images(4, 32))
    v = resolve_protocol("video17x256", size=32, frames=5, max_samples=2)
    clips = list(EvalData("embedded", v).items())
    assert torch.equal(torch.stack([s.x for s in clips]), heldout_clips(2, 5, 32))
    # Rank shares partition the items by index.
    shares = [list(EvalData("embedded", p).items(r, 3)) for r in range(3)]
    assert sorted(s.index for share in shares for s in share) == [0, 1, 2, 3]
    assert [s.index for s in shares[1]] == [1]


def test_image_folder_items_sorted_preprocessed_and_bad_files_listed(tmp_path):
    root = image_folder(tmp_path / "images")
    p = resolve_protocol("image256", size=32)
    items = list(EvalData(str(root), p).items())
    names = [s.name.removeprefix(str(root) + "/") for s in items]
    assert names == ["a.png", "b.png", "c.jpg", "corrupt.png", "d.png", "empty.png", "sub/e.png", "truncated.png"]
    good = [s for s in items if isinstance(s, Sample)]
    bad = {s.name.rsplit("/", 1)[-1]: s.reason for s in items if isinstance(s, Skipped)}
    assert all(s.x.shape == (3, 32, 32) for s in good) and len(good) == 5
    assert set(bad) == {"corrupt.png", "empty.png", "truncated.png"}
    assert bad["empty.png"].startswith("empty:") and bad["corrupt.png"].startswith("corrupt:")
    assert "truncated" in bad["truncated.png"]
    limited = EvalData(str(root), resolve_protocol("image256", size=32, max_samples=2))
    assert [s.index for s in limited.items()] == [0, 1]


def test_video_folder_clips_take_the_first_frames_with_the_stride(tmp_path):
    root = video_folder(tmp_path / "videos")
    p = resolve_protocol("video17x256", size=16, frames=5, frame_stride=2)
    items = list(EvalData(str(root), p).items())
    good = [s for s in items if isinstance(s, Sample)]
    bad = {s.name.rsplit("/", 1)[-1]: s.reason for s in items if isinstance(s, Skipped)}
    assert len(good) == 3 and set(bad) == {"corrupt.mp4", "short.mp4"}
    assert bad["short.mp4"].startswith("too_short:")
    for s in good:
        assert s.x.shape == (3, 5, 16, 16)
        # The bottom rows carry the index code undisturbed: frames 0, 2, 4, 6, 8.
        assert frame_index(s.x[:, :, 12:]) == [0, 2, 4, 6, 8]


def test_bad_data_specs_are_errors_naming_the_path(tmp_path):
    p = PROTOCOLS["image256"]
    with pytest.raises(DataSpecError, match="no such folder"):
        EvalData(str(tmp_path / "missing"), p)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSpecError, match=r"empty: the folder holds no image files"):
        EvalData(str(tmp_path / "empty"), p)
    with pytest.raises(DataSpecError, match="no shard file"):
        EvalData(str(tmp_path / "x-*.tar"), p)
