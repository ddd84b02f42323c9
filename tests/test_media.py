"""Reading and writing images and videos: exact values, modes, round trips and every kind of bad file."""

from __future__ import annotations

import io
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data, transform

from hydra_x.data.media import MediaError, image_to_tensor, is_image_path, read_image, resize_short_side, write_image
from hydra_x.data.video import VideoWriter, iter_video_frames, read_video, video_info, write_video
from hydra_x.eval import video_psnr
from tests.media_fixtures import write_unknown_codec_mkv


def photo_uint8(name: str, height: int, width: int) -> np.ndarray:
    """A bundled scikit-image photograph, downsized: (H, W, 3) uint8."""
    img = transform.resize(getattr(data, name)(), (height, width), anti_aliasing=True)
    return (img * 255).round().astype(np.uint8)


def signed(v: np.ndarray, maxval: float = 255.0) -> torch.Tensor:
    """Expected tensor for (H, W, C) integer values: (C, H, W) in [-1, 1]."""
    return torch.from_numpy(v.astype(np.float64) / maxval * 2 - 1).permute(2, 0, 1)


def pan_clip(frames: int, height: int = 64, width: int = 64) -> torch.Tensor:
    """A pan over a photograph with a moving white square: (3, F, H, W) in [-1, 1]."""
    base = torch.from_numpy(photo_uint8("astronaut", 96, 128)).permute(2, 0, 1).float() / 127.5 - 1
    out = []
    for t in range(frames):
        frame = base[:, 8 : 8 + height, 2 * t : 2 * t + width].clone()
        frame[:, 10 + t : 18 + t, 20:28] = 1.0
        out.append(frame)
    return torch.stack(out, dim=1)


def write_mp4_moov_at_end(path: Path, clip: torch.Tensor, fps: int = 25) -> None:
    """An MP4 without faststart (the moov index at the end), as most cameras and encoders write it."""
    arr = ((clip.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()  # (F, H, W, 3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = arr.shape[2], arr.shape[1], "yuv420p"
        for frame in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def pil_info(path: Path) -> tuple[str, str, np.ndarray]:
    """(format, mode, pixels) of an image file, read with Pillow directly (closing the file)."""
    with Image.open(path) as im:
        return im.format, im.mode, np.asarray(im)


def assert_media_error(path: Path, reader, match: str) -> MediaError:
    with pytest.raises(MediaError) as info:
        reader(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert match in message, message
    assert isinstance(info.value, ValueError)
    return info.value


# ---------------------------------------------------------------------------- images


def test_is_image_path() -> None:
    names = ("a.png", "b.JPG", "c.jpeg", "d.webp", "e.bmp", "f.tif", "g.TIFF", "h.gif", "i.jfif", "j.jpe", "k.avif")
    for name in names:
        assert is_image_path(name)
    for name in ("a.mp4", "b.mkv", "c.webm", "noext", "d.png.mov"):
        assert not is_image_path(name)


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    rgb = photo_uint8("astronaut", 48, 64)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    x = read_image(tmp_path / "a.png")
    assert x.dtype == torch.float32 and x.shape == (3, 48, 64)
    assert torch.allclose(x.double(), signed(rgb), atol=1e-6)
    write_image(tmp_path / "b.png", x)
    assert np.array_equal(pil_info(tmp_path / "b.png")[2], rgb)
    assert torch.equal(read_image(tmp_path / "b.png"), x)


def test_write_image_clamps_and_picks_format(tmp_path: Path) -> None:
    x = torch.linspace(-2, 2, 3 * 16 * 24).reshape(3, 16, 24)
    write_image(tmp_path / "a.png", x)
    v = pil_info(tmp_path / "a.png")[2]
    assert v.min() == 0 and v.max() == 255
    for name, fmt in (("b.jpg", "JPEG"), ("c.webp", "WEBP"), ("d.jpeg", "JPEG")):
        write_image(tmp_path / name, x)
        assert pil_info(tmp_path / name)[0] == fmt
    with pytest.raises(MediaError, match="extension"):
        write_image(tmp_path / "e.xyz", x)


def test_jpeg_reads_close_to_the_original(tmp_path: Path) -> None:
    rgb = photo_uint8("coffee", 48, 64)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    x = read_image(tmp_path / "a.jpg")
    assert (x.double() - signed(rgb)).abs().mean() < 0.03


def test_grayscale_png(tmp_path: Path) -> None:
    gray = photo_uint8("astronaut", 40, 50)[..., 1]
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert pil_info(tmp_path / "g.png")[1] == "L"
    x = read_image(tmp_path / "g.png")
    assert x.shape == (3, 40, 50)
    for c in range(3):
        assert torch.allclose(x[c].double(), torch.from_numpy(gray / 255 * 2 - 1), atol=1e-6)


def test_rgba_png_composites_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 3, 4), dtype=np.uint8)
    rgba[..., :3] = [200, 40, 0]
    rgba[0, :, 3] = 255  # opaque: the colour itself
    rgba[1, :, 3] = 0  # transparent: white
    rgba[2, :, 3] = 128  # half: the blend
    rgba[3, :, 3] = 51
    Image.fromarray(rgba).save(tmp_path / "a.png")
    x = read_image(tmp_path / "a.png").double()
    colour = torch.tensor([200, 40, 0], dtype=torch.float64) / 255
    for row, alpha in enumerate((255, 0, 128, 51)):
        a = alpha / 255
        expected = (colour * a + (1 - a)) * 2 - 1
        assert torch.allclose(x[:, row, 0], expected, atol=1e-6), (row, x[:, row, 0], expected)


def test_la_and_palette_transparency(tmp_path: Path) -> None:
    la = np.stack([np.full((2, 2), 100, np.uint8), np.array([[255, 0], [0, 255]], np.uint8)], axis=-1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    x = read_image(tmp_path / "la.png")
    assert torch.allclose(x[:, 0, 0], torch.full((3,), 100 / 255 * 2 - 1), atol=1e-6)
    assert torch.allclose(x[:, 0, 1], torch.ones(3))  # transparent -> white
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 1  # palette index 1 (blue) is transparent
    p.save(tmp_path / "p.png", transparency=1)
    x = read_image(tmp_path / "p.png")
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(x[:, 0, 1], torch.ones(3))
    Image.fromarray(np.array([[10, 20]], np.uint8)).save(tmp_path / "key.png", transparency=20)  # L, gray key
    x = read_image(tmp_path / "key.png")
    assert torch.allclose(x[:, 0, 0], torch.full((3,), 10 / 255 * 2 - 1), atol=1e-6)
    assert torch.allclose(x[:, 0, 1], torch.ones(3))


def test_16_bit_png_keeps_its_precision(tmp_path: Path) -> None:
    # Values 8-bit cannot represent (e.g. 1000 / 65535): a reader that dropped to 8 bits would be off by >1e-3.
    values = np.array([[0, 1000, 65535], [257, 30001, 65000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert pil_info(tmp_path / "g16.png")[1].startswith("I")
    x = read_image(tmp_path / "g16.png").double()
    expected = torch.from_numpy(values / 65535 * 2 - 1)
    for c in range(3):
        assert torch.allclose(x[c], expected, atol=1e-6)
    big_endian = Image.frombytes("I;16B", (3, 2), values.astype(">u2").tobytes())
    assert torch.allclose(image_to_tensor(big_endian)[0].double(), expected, atol=1e-6)
    int32 = Image.fromarray(values.astype(np.int32))  # mode I, how Pillow may hold 16-bit data
    assert int32.mode == "I"
    assert torch.allclose(image_to_tensor(int32)[0].double(), expected, atol=1e-6)


def test_cmyk_and_exif_orientation(tmp_path: Path) -> None:
    rgb = photo_uint8("chelsea", 24, 32)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk.save(tmp_path / "c.tif")
    x = read_image(tmp_path / "c.tif").double()
    assert torch.allclose(x, signed(np.asarray(cmyk.convert("RGB"))), atol=1e-6)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert read_image(tmp_path / "r.jpg").shape == (3, 32, 24)


def test_bad_image_files(tmp_path: Path) -> None:
    assert_media_error(tmp_path / "missing.png", read_image, "no such file")
    (tmp_path / "empty.png").write_bytes(b"")
    assert_media_error(tmp_path / "empty.png", read_image, "empty")
    (tmp_path / "dir.png").mkdir()
    assert_media_error(tmp_path / "dir.png", read_image, "directory")
    rng = np.random.default_rng(0)
    (tmp_path / "junk.png").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    assert_media_error(tmp_path / "junk.png", read_image, "not a readable image")
    rgb = photo_uint8("astronaut", 48, 64)
    for fmt, name in (("PNG", "t.png"), ("JPEG", "t.jpg"), ("WEBP", "t.webp")):
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format=fmt)
        (tmp_path / name).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        assert_media_error(tmp_path / name, read_image, "truncated or corrupt")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    damaged = bytearray(buffer.getvalue())
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = bytes(64)  # zeroed pixel data: CRC / zlib failure
    (tmp_path / "c.png").write_bytes(bytes(damaged))
    assert_media_error(tmp_path / "c.png", read_image, "truncated or corrupt")


def test_resize_short_side() -> None:
    x = torch.rand(3, 48, 64) * 2 - 1
    y = resize_short_side(x, 24)
    assert y.shape == (3, 24, 32) and y.min() >= -1 and y.max() <= 1
    assert torch.allclose(y.mean(), x.mean(), atol=0.05)
    clip = torch.rand(3, 5, 50, 30) * 2 - 1  # portrait: the width is the short side
    out = resize_short_side(clip, 15)
    assert out.shape == (3, 5, 25, 15)
    assert torch.equal(out[:, 2], resize_short_side(clip[:, 2], 15))
    assert resize_short_side(x, 48) is x


# ---------------------------------------------------------------------------- videos


@pytest.mark.parametrize(
    ("name", "size", "fps"),
    [("a.mp4", (64, 64), 24.0), ("odd.mp4", (45, 63), 30000 / 1001), ("b.mkv", (48, 64), 25.0)],
)
def test_video_round_trip(tmp_path: Path, name: str, size: tuple[int, int], fps: float) -> None:
    clip = pan_clip(25, *size)  # (3, 25, H, W)
    write_video(tmp_path / name, clip, fps)
    info = video_info(tmp_path / name)
    assert (info.height, info.width) == size
    assert info.fps == pytest.approx(fps, abs=1e-6)
    assert info.frames in (25, None)  # Matroska does not state a frame count
    frames, read_fps = read_video(tmp_path / name)
    assert frames.shape == (3, 25, *size) and frames.dtype == torch.float32
    assert read_fps == pytest.approx(fps, abs=1e-6)
    assert frames.min() >= -1 and frames.max() <= 1
    assert (frames - clip).abs().mean() < 0.05
    assert video_psnr(frames[None], clip[None]).item() > 30
    assert abs((frames - clip).mean()) < 0.005  # no colour / level shift (BT.709 written and read)
    assert not list(tmp_path.glob(".*"))  # the temporary file was renamed


def test_webm_and_gif(tmp_path: Path) -> None:
    clip = pan_clip(9, 32, 48)
    write_video(tmp_path / "a.webm", clip, 25)
    frames, fps = read_video(tmp_path / "a.webm")
    assert frames.shape == (3, 9, 32, 48) and fps == 25
    assert (frames - clip).abs().mean() < 0.05
    write_video(tmp_path / "a.gif", clip, 10)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 9 and im.size == (48, 32) and im.info["duration"] == 100


def test_iter_frames_and_max_frames(tmp_path: Path) -> None:
    clip = pan_clip(17, 32, 32)
    write_video(tmp_path / "a.mp4", clip, 25)
    frames = list(iter_video_frames(tmp_path / "a.mp4", max_frames=5))
    assert len(frames) == 5 and all(f.shape == (3, 32, 32) for f in frames)
    video, _ = read_video(tmp_path / "a.mp4", max_frames=10)
    assert video.shape == (3, 10, 32, 32)
    assert torch.equal(video[:, :5], torch.stack(frames, dim=1))


def test_video_writer_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), VideoWriter(target, 25) as writer:
        writer.write(pan_clip(5, 32, 32))
        raise RuntimeError("stop half-way")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MediaError, match="no frames"), VideoWriter(target, 25):
        pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MediaError, match="folder"):
        VideoWriter(tmp_path / "no" / "out.mp4", 25)
    with pytest.raises(MediaError, match="extension"):
        VideoWriter(tmp_path / "out.avi", 25)
    with VideoWriter(target, Fraction(30000, 1001)) as writer:  # incremental: chunk after chunk
        writer.write(pan_clip(5, 32, 32))
        writer.write(pan_clip(4, 32, 32)[:, 0])  # a single (3, H, W) frame
    assert video_info(target).frames == 6


def test_bad_video_files(tmp_path: Path) -> None:
    for reader in (video_info, read_video):
        assert_media_error(tmp_path / "missing.mp4", reader, "no such file")
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert_media_error(tmp_path / "empty.mp4", video_info, "empty")
    rng = np.random.default_rng(0)
    (tmp_path / "junk.mp4").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert_media_error(tmp_path / "junk.mp4", video_info, "not a readable video")
    assert_media_error(tmp_path / "junk.mp4", read_video, "not a readable video")

    clip = pan_clip(40, 32, 32)
    # Cut before its index: cannot even be opened.
    write_mp4_moov_at_end(tmp_path / "full.mp4", clip)
    raw = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(raw[: len(raw) // 2])
    assert_media_error(tmp_path / "cut.mp4", video_info, "truncated or corrupt")
    # Index first (faststart), cut in the frame data: opens, then decodes too few frames.
    write_video(tmp_path / "fast.mp4", clip, 25)
    raw = (tmp_path / "fast.mp4").read_bytes()
    (tmp_path / "cut_fast.mp4").write_bytes(raw[: int(len(raw) * 0.8)])
    assert video_info(tmp_path / "cut_fast.mp4").frames == 40
    error = assert_media_error(tmp_path / "cut_fast.mp4", read_video, "truncated or corrupt")
    # FFmpeg 7 / 8 (PyAV 18, 19) stop quietly at the cut, so only the header's count tells; the FFmpeg of
    # PyAV 17 reports a decoding error at the cut instead. Either way: one line that says what happened.
    assert "of the 40 frames" in str(error) or re.search(r"decoding failed after \d+ frame", str(error))


def test_file_without_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        samples = (np.sin(np.arange(8000) / 5) * 3000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert_media_error(path, video_info, "no video stream")


def test_a_codec_ffmpeg_does_not_know_is_a_media_error(tmp_path: Path) -> None:
    path = tmp_path / "unknown.mkv"
    write_unknown_codec_mkv(path)
    for reader in (video_info, read_video):
        assert_media_error(path, reader, "codec is unknown")
