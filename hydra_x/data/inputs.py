"""A user's media file as a command or an app receives it: an image read now, or a video probed and streamed.

Checks that precede any slow work: the output's extension suits the kind of result, options are sane. Problems
raise :class:`~hydra_x.errors.InputError` (unreadable files: its subclass ``MediaError``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from hydra_x.data.media import IMAGE_WRITE_FORMATS, image_pixel_limit, is_image_path, read_image, resize_short_side
from hydra_x.data.video import VIDEO_WRITE_EXTENSIONS, iter_video_frames, read_video, video_info
from hydra_x.errors import InputError

IMAGE_OUTPUTS = tuple(IMAGE_WRITE_FORMATS)


def media_kind(path: Path) -> str:
    return "image" if is_image_path(path) else "video"


def check_output(path: Path, kind: str, what: str = "input") -> None:
    """The output's extension must suit the kind of result, and its folder must exist."""
    suffix = path.suffix.lower()
    if kind == "image" and suffix not in IMAGE_OUTPUTS:
        raise InputError(
            f"an image {what} needs an image output ({', '.join(IMAGE_OUTPUTS)}); got {path}"
            + (" (.gif is written as an animated video)" if suffix == ".gif" else "")
        )
    if kind == "video" and suffix not in VIDEO_WRITE_EXTENSIONS:
        raise InputError(f"a video {what} needs a video output ({', '.join(VIDEO_WRITE_EXTENSIONS)}); got {path}")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")


@dataclass
class ImageInput:
    pixels: torch.Tensor  # (3, H, W) after resizing


@dataclass
class VideoInput:
    path: Path
    fps: float
    frames_hint: int | None  # from the header (and max_frames): for a progress bar only
    height: int
    width: int
    max_frames: int | None
    resize: int | None

    def frames(self) -> Iterator[torch.Tensor]:
        """(3, H, W) frames after resizing, decoded lazily."""
        for frame in iter_video_frames(self.path, max_frames=self.max_frames):
            yield resize_short_side(frame, self.resize) if self.resize else frame


def open_input(
    path: Path, resize: int | None = None, max_frames: int | None = None, max_image_pixels: int | None = None
) -> ImageInput | VideoInput:
    """Read an image now, or probe a video (its frames are decoded while they are processed).

    ``resize``: the shorter side in pixels (aspect kept); ``max_frames``: a video's first frames only;
    ``max_image_pixels``: the image size limit for this read (0: none; None: the one in force, see
    hydra_x.data.media.max_image_pixels).
    """
    if resize is not None and resize < 1:
        raise InputError(f"--resize must be a positive number of pixels, got {resize}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames must be at least 1, got {max_frames}")
    if max_image_pixels is not None and max_image_pixels < 0:
        raise InputError(f"--max-image-pixels must be at least 0 (0: no limit), got {max_image_pixels}")
    if media_kind(path) == "image":
        limit = contextlib.nullcontext() if max_image_pixels is None else image_pixel_limit(max_image_pixels)
        with limit:
            x = read_image(path)
        return ImageInput(resize_short_side(x, resize) if resize else x)
    info = video_info(path)
    height, width = info.height, info.width
    if resize:  # the size resize_short_side gives, without decoding a frame
        height, width = resize_short_side(torch.zeros(1, height, width), resize).shape[-2:]
    hint = min(info.frames, max_frames) if info.frames and max_frames else (info.frames or max_frames)
    return VideoInput(path, info.fps, hint, height, width, max_frames, resize)


def fit_to_patches(x: torch.Tensor, size: int, patch: int) -> torch.Tensor:
    """Resize (3, H, W) / (3, F, H, W) so that the short side is ``size``, then centre-crop both sides to a
    multiple of the patch: what a unified model reads (chat, edit), whatever the file's size."""
    x = resize_short_side(x, size)
    h, w = (s - s % patch for s in x.shape[-2:])
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def read_clip(path: Path, frames: int) -> torch.Tensor:
    """A video's first ``frames`` frames (3, frames, H, W); a shorter video is an InputError, not a short clip."""
    clip, _ = read_video(path, max_frames=frames)
    if clip.shape[1] < frames:
        raise InputError(f"{path}: {clip.shape[1]} frames, fewer than the {frames} the model reads")
    return clip
