"""A tiny unified checkpoint (random weights: the app's plumbing, not its quality, is under test) and uploads,
good and bad, built once per session for the web app's tests."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from hydra_x.data.video import write_video
from hydra_x.unified.model import HydraX
from tests.media_fixtures import bad_video_files, photo_uint8
from tests.web.optional import skip_or_fail


@pytest.fixture
def gradio():
    """The gradio module (the web extra), for the tests that build or serve the page."""
    if importlib.util.find_spec("gradio") is None:
        skip_or_fail("the web extra is not installed: pip install 'hydra-x[web]'")
    import gradio

    return gradio


HUGE_SIDE = 20_000  # a 20000 x 20000 PNG: 400 M pixels, over every limit, yet a 50 kB file


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``HydraX.from_preset("tiny")`` as ``save_pretrained`` writes it (what ``hydra-x serve --ckpt`` loads)."""
    return HydraX.from_preset("tiny", seed=0).save_pretrained(tmp_path_factory.mktemp("tiny-unified") / "export")


@pytest.fixture(scope="session")
def model(tiny_ckpt: Path) -> HydraX:
    return HydraX.from_pretrained(tiny_ckpt)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_huge_png(path: Path, side: int = HUGE_SIDE) -> Path:
    """A valid 1-bit grey PNG of side x side black pixels, compressed row by row: never held in memory whole."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> file: ``image`` (48 x 80 PNG), ``video`` (9 frames, 32 x 48 MP4) and the bad ones."""
    folder = tmp_path_factory.mktemp("uploads")
    Image.fromarray(photo_uint8("astronaut", 48, 80)).save(folder / "astronaut.png")
    frames = torch.stack([torch.roll(torch.from_numpy(photo_uint8("coffee", 32, 48)), 2 * i, 1) for i in range(9)])
    write_video(folder / "clip.mp4", frames.permute(3, 0, 1, 2).float() / 127.5 - 1, 8)
    (folder / "text.png").write_text("this is a text file, not a PNG\n" * 4)
    bad_video_files(folder)  # bad_truncated.mp4, bad_text.mp4, bad_empty.mp4, ...
    write_huge_png(folder / "huge.png")
    return {
        "image": folder / "astronaut.png",
        "video": folder / "clip.mp4",
        "text_png": folder / "text.png",
        "truncated_mp4": folder / "bad_truncated.mp4",
        "text_mp4": folder / "bad_text.mp4",
        "empty_png": _empty(folder / "empty.png"),
        "huge_png": folder / "huge.png",
    }


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path
