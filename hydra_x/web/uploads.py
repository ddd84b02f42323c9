"""What the web app accepts from a browser: limits checked before any slow work, files read with the library's readers.

A server reads files that anyone who can reach it sends, so every upload is checked in this order, each step
cheap before the next, more expensive one: the byte size (a stat), then the header (Pillow's lazy open reads
the size of an image without decoding it, PyAV probes a video's stream), then the pixel count against
:class:`Limits`, and only then the decode. A 20000 x 20000 PNG is refused from its 33-byte header.

Problems raise :class:`~hydra_x.errors.InputError` (the readers' ``MediaError`` included) whose message names the
file by its upload name, not by the server's temporary path (``upload_errors``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from hydra_x.data.inputs import VideoInput, media_kind, open_input, read_clip
from hydra_x.data.media import check_file, read_image, read_image_size
from hydra_x.errors import InputError

MB = 1_000_000


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server; ``hydra-x serve`` options set them (see docs/web.md)."""

    max_upload_bytes: int = 50 * MB
    max_image_pixels: int = 4096 * 4096  # an uploaded image (reconstruction reads it at full size)
    max_video_pixels: int = 1920 * 1080  # one frame of an uploaded video
    max_video_frames: int = 34  # frames of a video read for reconstruction (the first ones): 2 clips of 17
    max_output_side: int = 1024  # generated images and videos, per side
    max_output_frames: int = 65  # generated videos
    max_steps: int = 200  # sampling steps
    max_new_tokens: int = 512  # a chat reply
    max_prompt_chars: int = 2000  # a prompt, an instruction or a chat message

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"the web app's limit {name} must be a positive whole number, got {value!r}")


@contextlib.contextmanager
def upload_errors(path: Path) -> Iterator[None]:
    """Errors about ``path`` name it as the user knows it (its file name), not by the server's temporary folder."""
    try:
        yield
    except InputError as err:
        message = str(err)
        if str(path) not in message:
            raise
        raise InputError(message.replace(str(path), path.name)) from err


def check_upload(path: str | Path, limits: Limits) -> Path:
    """An existing, non-empty file within the byte limit."""
    path = Path(path)
    with upload_errors(path):
        check_file(path)
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise InputError(
            f"{path.name}: {size / MB:.1f} MB, over this app's upload limit of {limits.max_upload_bytes / MB:g} MB"
        )
    return path


def check_pixels(name: str, height: int, width: int, limit: int, what: str) -> None:
    if height * width > limit:
        raise InputError(
            f"{name}: the {what} is {width}x{height} = {height * width:,} pixels, over this app's limit of "
            f"{limit:,} pixels"
        )


def read_image_upload(path: str | Path, limits: Limits) -> torch.Tensor:
    """An uploaded image -> (3, H, W) in [-1, 1], its size checked from the header before it is decoded."""
    path = check_upload(path, limits)
    if media_kind(path) != "image":
        raise InputError(f"{path.name}: not an image file (the extension says a video); upload an image")
    with upload_errors(path):
        height, width = read_image_size(path)  # header only; refuses what the library's own limit refuses
        check_pixels(path.name, height, width, limits.max_image_pixels, "image")
        return read_image(path)


def probe_video_upload(path: str | Path, limits: Limits) -> VideoInput:
    """An uploaded video, probed (no frame decoded yet) and checked: at most ``max_video_frames`` will be read."""
    path = check_upload(path, limits)
    if media_kind(path) != "video":
        raise InputError(f"{path.name}: not a video file (the extension says an image); upload a video")
    with upload_errors(path):
        media = open_input(path, max_frames=limits.max_video_frames)
    check_pixels(path.name, media.height, media.width, limits.max_video_pixels, "video frame")
    return media  # type: ignore[return-value]


def read_clip_upload(path: str | Path, frames: int, limits: Limits) -> torch.Tensor:
    """The first ``frames`` frames (3, frames, H, W) of an uploaded video, checked as ``probe_video_upload``."""
    if frames > limits.max_video_frames:
        raise InputError(f"{frames} frames asked for, over this app's limit of {limits.max_video_frames}")
    media = probe_video_upload(path, limits)
    with upload_errors(media.path):
        return read_clip(media.path, frames)


def check_prompt(text: str | None, what: str, limits: Limits) -> str:
    """A non-empty prompt, instruction or message within the length limit, stripped, without the markers the model
    reserves for pictures (``<image>``, ``<|begin_of_image|>``, ...): the app places those itself."""
    text = (text or "").strip()
    if not text:
        raise InputError(f"the {what} is empty; type one")
    if len(text) > limits.max_prompt_chars:
        limit = limits.max_prompt_chars
        raise InputError(f"the {what} has {len(text):,} characters, over this app's limit of {limit:,}")
    from hydra_x.unified.sequence import PLACEHOLDERS, VISUAL_SPECIAL_TOKENS  # transformers: not at `hydra-x --help`

    reserved = [m for m in (*PLACEHOLDERS, *VISUAL_SPECIAL_TOKENS) if m in text]
    if reserved:
        raise InputError(f"the {what} holds {reserved[0]}, which the model reserves for pictures; leave it out")
    return text
