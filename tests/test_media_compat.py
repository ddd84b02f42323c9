"""Media I/O as a fresh install meets it: every PyAV the project allows, every image extension Pillow reads."""

from __future__ import annotations

import io
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import hydra_x.data.media as media
from hydra_x.data.folders import list_files
from hydra_x.data.inputs import media_kind
from hydra_x.data.media import (
    IMAGE_EXTENSIONS,
    MediaError,
    avif_supported,
    image_to_tensor,
    is_image_path,
    read_image,
    unit_to_signed,
)
from hydra_x.data.video import VideoWriter, open_container, read_video, video_info, write_video


def gradient_rgb(height: int = 40, width: int = 56) -> np.ndarray:
    """(H, W, 3) uint8 with smooth colour ramps (compresses well, survives lossy codecs)."""
    y, x = np.mgrid[0:height, 0:width]
    ramps = [x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 255 // (width + height - 2)]
    return np.stack(ramps, -1).astype(np.uint8)


def clip(frames: int = 5, size: int = 32) -> torch.Tensor:
    v = torch.linspace(-0.8, 0.8, frames)[None, :, None, None]
    return v.expand(3, frames, size, size).contiguous()


# ---------------------------------------------------------------------------- PyAV versions


def write_mp4_with_tag(path: Path, title: bytes) -> None:
    """An H.264 MP4 whose container title tag holds ``title``, byte for byte (any encoding, even invalid UTF-8)."""
    placeholder = "HYDRAXTAG_" + "A" * (len(title) - 10)
    with av.open(str(path), "w") as container:
        container.metadata["title"] = placeholder
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 60 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    raw = path.read_bytes()
    assert raw.count(placeholder.encode()) == 1
    path.write_bytes(raw.replace(placeholder.encode(), title))  # same length: the MP4 boxes stay valid


def test_a_non_utf8_tag_does_not_reject_a_video(tmp_path: Path) -> None:
    """Latin-1 tags (old cameras, editors) are common; a strict UTF-8 decode rejected the whole file."""
    path = tmp_path / "latin1.mp4"
    write_mp4_with_tag(path, "HYDRAXTAG_caf\xe9 \xe0 No\xebl".encode("latin-1"))
    info = video_info(path)
    assert (info.frames, info.width, info.height) == (4, 32, 32)
    frames, _ = read_video(path)
    assert frames.shape == (3, 4, 32, 32)
    with open_container(io.BytesIO(path.read_bytes())) as container:  # a shard member: a binary stream
        assert "title" in container.metadata


def test_open_container_on_the_pyav_19_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyAV 19 removed av.open's ``metadata_errors`` (a TypeError): every video then read as corrupt.

    PyAV 19 has no wheel for this Python, so its signature stands in here; the media tests themselves run on
    a Python 3.12 machine with the real wheel.
    """
    write_video(tmp_path / "a.mp4", clip(), 25)
    real_open = av.open

    def open_19(file, mode=None, format=None, options=None, container_options=None, **kwargs):
        if kwargs:
            raise TypeError(f"open() got an unexpected keyword argument '{next(iter(kwargs))}'")
        return real_open(file, mode, format=format, options=options, container_options=container_options)

    monkeypatch.setattr(av, "__version__", "19.0.2")
    monkeypatch.setattr(av, "open", open_19)
    assert video_info(tmp_path / "a.mp4").frames == 5
    assert read_video(tmp_path / "a.mp4")[0].shape == (3, 5, 32, 32)


def test_the_video_writer_leaves_nothing_when_finishing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure in close() (here the final rename) must not leave the hidden partial file behind."""

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"), VideoWriter(tmp_path / "out.mp4", 25) as writer:
        writer.write(clip())
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- image extensions


def test_every_extension_pillow_registers_for_our_formats_is_an_image() -> None:
    formats = {"PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "AVIF"}
    registered = {ext for ext, fmt in Image.registered_extensions().items() if fmt in formats}
    assert {".jfif", ".jpe", ".avif"} <= registered  # what users met: taken for videos before
    assert registered <= IMAGE_EXTENSIONS, registered - IMAGE_EXTENSIONS
    for name in ("a.jfif", "b.JPE", "c.avif", "d.apng", "e.avifs"):
        assert is_image_path(name) and media_kind(Path(name)) == "image"


def test_jfif_and_jpe_files_read_as_jpeg(tmp_path: Path) -> None:
    rgb = gradient_rgb()
    Image.fromarray(rgb).save(tmp_path / "ref.jpg", format="JPEG", quality=95)
    reference = read_image(tmp_path / "ref.jpg")
    for name in ("a.jfif", "b.jpe"):
        (tmp_path / name).write_bytes((tmp_path / "ref.jpg").read_bytes())
        assert torch.equal(read_image(tmp_path / name), reference)
    assert {p.name for p in map(Path, list_files(tmp_path, IMAGE_EXTENSIONS))} == {"ref.jpg", "a.jfif", "b.jpe"}
    media.write_image(tmp_path / "out.jfif", reference)  # written as JPEG too
    with Image.open(tmp_path / "out.jfif") as im:
        assert im.format == "JPEG"


@pytest.mark.skipif(not avif_supported(), reason="this Pillow has no AVIF codec")
def test_avif_reads_as_an_image(tmp_path: Path) -> None:
    rgb = gradient_rgb()
    try:
        Image.fromarray(rgb).save(tmp_path / "a.avif", quality=90)
    except (OSError, KeyError) as err:  # a decoder-only libavif
        pytest.skip(f"this Pillow cannot encode AVIF: {err}")
    x = read_image(tmp_path / "a.avif")
    assert x.shape == (3, 40, 56)
    assert (x.double() - unit_to_signed(rgb / 255.0).double()).abs().mean() < 0.03
    assert [Path(p).name for p in list_files(tmp_path, IMAGE_EXTENSIONS)] == ["a.avif"]


def test_avif_without_an_avif_pillow_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Pillow without AVIF (< 11.3, or built without libavif): a clear error, not 'corrupt', not a video."""
    path = tmp_path / "a.avif"
    path.write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(200))
    monkeypatch.setattr(media, "avif_supported", lambda: False)
    monkeypatch.setattr(Image, "ID", [f for f in Image.ID if f != "AVIF"])  # as if no AVIF plugin were installed
    with pytest.raises(MediaError, match="cannot decode AVIF") as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------- 8-bit levels


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "P"])
def test_8_bit_levels_are_exactly_the_float_formula(mode: str) -> None:
    """The table lookup gives the very values of the float64 route (v / 255, then 2x - 1 in float32)."""
    levels = np.arange(256, dtype=np.uint8)
    rgb = np.stack([levels.reshape(16, 16), levels.reshape(16, 16).T, 255 - levels.reshape(16, 16)], -1)
    im = Image.fromarray(rgb).convert(mode) if mode != "RGB" else Image.fromarray(rgb)
    expected = unit_to_signed(np.asarray(im.convert("RGB")).astype(np.float64) / 255.0)
    x = image_to_tensor(im)
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16) and x.is_contiguous()
    assert torch.equal(x, expected)
