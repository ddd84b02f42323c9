"""Small image / video folders and shards, good and bad, built once per test session.

Conftests import the fixtures from here (tests/data for the pipeline, tests/train for training runs)."""

from __future__ import annotations

import io
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data, transform

from hydra_x.data.shards import main as shards_main
from hydra_x.data.video import write_video

VIDEO_FRAMES = 30  # frames of the index-coded videos


def photo_uint8(name: str, height: int, width: int) -> np.ndarray:
    """A bundled scikit-image photograph resized (squashed: content does not matter here): (H, W, 3) uint8."""
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return (transform.resize(img[..., :3], (height, width), anti_aliasing=True) * 255).round().astype(np.uint8)


def level(i: int) -> int:
    """The 8-bit grey level of frame i of an index-coded video."""
    return 8 * i + 4


def frame_index(clip: torch.Tensor) -> list[int]:
    """Frame indices of a (3, F, H, W) index-coded clip in [-1, 1] (mean brightness of each frame)."""
    means = ((clip.mean(dim=(0, 2, 3)) + 1) * 127.5).tolist()
    return [round((m - 4) / 8) for m in means]


def index_clip(frames: int, height: int, width: int) -> torch.Tensor:
    v = torch.tensor([level(i) for i in range(frames)], dtype=torch.float32) / 127.5 - 1
    return v[None, :, None, None].expand(3, frames, height, width).contiguous()


def write_vfr(path: Path, pts_ms: list[int], height: int = 32, width: int = 32) -> None:
    """A variable-frame-rate H.264 file: frame i has grey level level(i) and timestamp pts_ms[i] ms."""
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), level(i), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# (name, height, width): several aspect ratios, so several buckets are used at image_size 64.
GOOD_IMAGES = [
    ("astronaut", 64, 64),
    ("rocket", 60, 120),
    ("coffee", 72, 108),
    ("chelsea", 120, 60),
    ("camera", 96, 72),
    ("coins", 80, 80),
    ("hubble_deep_field", 50, 150),
    ("immunohistochemistry", 100, 75),
    ("retina", 70, 70),
    ("moon", 48, 96),
]


def _save_good_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sub = folder / "nested" / "deeper"
    sub.mkdir(parents=True)
    paths = []
    for i, (name, h, w) in enumerate(GOOD_IMAGES):
        path = (sub if i % 3 == 0 else folder) / f"{i:02d}_{name}.png"
        Image.fromarray(photo_uint8(name, h, w)).save(path)
        paths.append(path)
    # Modes converted exactly by media.read_image: grey, RGBA, CMYK, 16-bit grey.
    rgb = photo_uint8("astronaut", 64, 96)
    Image.fromarray(rgb).convert("L").save(folder / "mode_gray.png")
    rgba = np.concatenate([rgb, np.full((64, 96, 1), 200, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(folder / "mode_rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "mode_cmyk.jpg", quality=95)
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "mode_16bit.png")
    return paths + [folder / n for n in ("mode_gray.png", "mode_rgba.png", "mode_cmyk.jpg", "mode_16bit.png")]


def bad_image_bytes() -> dict[str, bytes]:
    """Files that must be skipped: name -> content."""
    buf = io.BytesIO()
    Image.fromarray(photo_uint8("astronaut", 64, 64)).save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    rng = np.random.default_rng(0)
    return {
        "bad_empty.png": b"",
        "bad_truncated.jpg": jpeg[: len(jpeg) // 2],
        "bad_corrupt.png": b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes(),
        "bad_text.jpg": b"this is a text file, not a JPEG\n" * 4,
    }


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    _save_good_images(folder)
    return folder


@pytest.fixture(scope="session")
def bad_image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad_images")
    _save_good_images(folder)
    for name, content in bad_image_bytes().items():
        (folder / name).write_bytes(content)
    return folder


GOOD_VIDEOS = [(32, 48), (48, 32), (32, 32), (32, 64)]  # (H, W) of the index-coded videos


def _save_good_videos(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(GOOD_VIDEOS):
        write_video(folder / f"v{i}.mp4", index_clip(VIDEO_FRAMES, h, w), 25)


def bad_video_files(folder: Path) -> list[str]:
    """Write the videos that must be skipped into ``folder``; returns their names."""
    good = folder / ".good.mp4"  # hidden: not scanned
    write_video(good, index_clip(VIDEO_FRAMES, 32, 48), 25)
    raw = good.read_bytes()
    (folder / "bad_empty.mp4").write_bytes(b"")
    (folder / "bad_truncated.mp4").write_bytes(raw[: int(len(raw) * 0.6)])
    (folder / "bad_text.mp4").write_text("not a video at all\n" * 20)
    (folder / "bad_codec.mp4").write_bytes(raw.replace(b"avc1", b"zzzz"))  # a codec FFmpeg does not know
    write_video(folder / "bad_short.mp4", index_clip(4, 32, 48), 25)
    write_audio_only(folder / "bad_audio.mp4")
    return ["bad_empty.mp4", "bad_truncated.mp4", "bad_text.mp4", "bad_codec.mp4", "bad_short.mp4", "bad_audio.mp4"]


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    _save_good_videos(folder)
    return folder


@pytest.fixture(scope="session")
def bad_video_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad_videos")
    _save_good_videos(folder)
    bad_video_files(folder)
    return folder


def add_member(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


@pytest.fixture(scope="session")
def image_shards(tmp_path_factory, image_dir) -> Path:
    out = tmp_path_factory.mktemp("image_shards")
    assert shards_main(["write", "--images", str(image_dir), "--out", str(out), "--per-shard", "3"]) == 0
    return out


@pytest.fixture(scope="session")
def video_shards(tmp_path_factory, video_dir) -> Path:
    out = tmp_path_factory.mktemp("video_shards")
    assert shards_main(["write", "--videos", str(video_dir), "--out", str(out), "--per-shard", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def bad_image_shards(tmp_path_factory, image_dir) -> Path:
    """Good shards plus: a shard of bad members, a truncated shard, an empty shard, a non-tar '.tar'."""
    out = tmp_path_factory.mktemp("bad_image_shards")
    assert shards_main(["write", "--images", str(image_dir), "--out", str(out), "--per-shard", "4"]) == 0
    with tarfile.open(out / "bad-members.tar", "w") as tar:
        for i, (name, content) in enumerate(bad_image_bytes().items()):
            add_member(tar, f"b{i:03d}.{name.rsplit('.', 1)[1]}", content)
        add_member(tar, "b999.json", b'{"caption": "a sample without an image"}')
    good = sorted(out.glob("images-*.tar"))[0].read_bytes()
    (out / "bad-truncated.tar").write_bytes(good[: len(good) // 2 + 100])
    (out / "bad-empty.tar").write_bytes(b"")
    (out / "bad-notatar.tar").write_bytes(b"plain text, not a tar archive\n" * 50)
    return out


def write_unknown_codec_mkv(path: Path) -> None:
    """A Matroska file whose video track names a codec no FFmpeg knows (PyAV then gives it no codec context)."""
    plain = path.with_name(path.stem + ".plain.mkv")
    with av.open(str(plain), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    raw = plain.read_bytes()
    assert raw.count(b"V_MPEG4/ISO/ASP") == 1
    path.write_bytes(raw.replace(b"V_MPEG4/ISO/ASP", b"V_ZZZZZ/ISO/ASP"))  # same length: the file stays valid
    plain.unlink()
