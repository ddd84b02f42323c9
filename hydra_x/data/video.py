"""Videos on disk <-> float32 tensors in [-1, 1] through PyAV (FFmpeg): reading frame by frame, writing atomically.

Conventions as for images (hydra_x.data.media): (3, F, H, W) clips, (3, H, W) frames, values in [-1, 1], every
unreadable file a ``MediaError``. Videos are read frame by frame in decode order with their average frame rate;
variable-frame-rate timestamps are not resampled (each decoded frame is one frame). Rotation side data is
ignored.

PyAV versions: 17.0 to 19.x (pyproject's bound; the media tests pass on 17.0, 17.1 and 18.1, and the code
follows PyAV 19's API and changelog -- its wheels need Python >= 3.12). What differs between them is kept
here: :func:`open_container` (PyAV 19 removed ``metadata_errors``), the swscale flags (named in PyAV only
from 18) and rates that are ``AVRational``, never None, from 19. PyAV < 17 is refused: its reformatter
applied the frame's colour matrix only when asked to convert between two different ones, so BT.709 video
was read with swscale's default BT.601 matrix (a colour shift: mean error 0.016 on a test clip with PyAV
14.1 to 16.1); 12 and 13 also reject combined swscale flags.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch
from PIL import Image

from hydra_x.data.media import MediaError, PathLike, check_file, decoder_reason, to_uint8, unit_to_signed

# Extensions VideoWriter accepts: H.264 in MP4 / Matroska / QuickTime, VP9 in WebM, animated GIF via Pillow.
VIDEO_WRITE_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".gif")
DEFAULT_FPS = 25.0
# libswscale's flag bits (SWS_* in swscale.h, the same in FFmpeg 4 to 8). PyAV names the last three only from
# 18 (Interpolation.ACCURATE_RND ...), but passes any integer through as the flags (from 14.1 on).
SWS_BILINEAR, SWS_BICUBIC = 0x2, 0x4
SWS_FULL_CHR_H_INT, SWS_FULL_CHR_H_INP, SWS_ACCURATE_RND = 0x2000, 0x4000, 0x40000
# swscale's default YUV 4:2:0 -> RGB path truncates (measured: a -0.5 level bias on gray frames, about -1.1 on
# photos); accurate rounding with full-resolution chroma interpolation removes it. Writing: a bicubic chroma
# downsample from full-resolution input, also with accurate rounding.
READ_INTERPOLATION = SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT
WRITE_INTERPOLATION = SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP
DEFAULT_CRF = 18  # x264's "visually lossless" region; lower is better and bigger


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # average frame rate (guessed rate, then 25 as fallbacks)
    frames: int | None  # frame count from the container header; None when the container does not say
    width: int
    height: int


def stream_fps(stream: av.video.stream.VideoStream, default: float = DEFAULT_FPS) -> float:
    """The average frame rate, else the guessed one, else ``default``.

    A rate is None (PyAV < 19) or AVRational(0, 1) (PyAV 19) when unknown, and 0/0 or 1/0 in broken headers.
    """
    for rate in (stream.average_rate, stream.guessed_rate):
        value = float(rate) if rate is not None else 0.0
        if math.isfinite(value) and value > 0:
            return value
    return default


def open_container(source: str | os.PathLike | BinaryIO) -> av.container.InputContainer:
    """``av.open`` for reading, on every supported PyAV: odd (non-UTF-8) metadata tags never reject a file.

    ``source``: a path or a binary file object (e.g. ``io.BytesIO`` of a shard member). Errors are PyAV's
    (``av.FFmpegError``, ``OSError``, and ``UnicodeDecodeError`` never from here); callers word them.
    """
    source = os.fspath(source) if isinstance(source, (str, os.PathLike)) else source
    # PyAV < 19 decodes container / stream tags as strict UTF-8 unless told otherwise, so one odd tag made the
    # whole file unreadable; 19 removed the option (a TypeError) and always decodes them with surrogateescape.
    legacy = int(av.__version__.split(".")[0]) < 19
    return av.open(source, mode="r", **({"metadata_errors": "replace"} if legacy else {}))


def _open_video(path: PathLike) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    path = check_file(path)
    try:
        container = open_container(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise MediaError(
            path, f"not a readable video, the file is truncated or corrupt ({decoder_reason(err)})"
        ) from err
    if not container.streams.video:
        container.close()
        raise MediaError(path, "has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # PyAV gives no codec context for a codec this FFmpeg does not know
        container.close()
        raise MediaError(path, "the video stream's codec is unknown to this FFmpeg build (unsupported codec)")
    if not stream.codec_context.width or not stream.codec_context.height:
        container.close()
        raise MediaError(path, "the video stream has no frame size (corrupt header or unsupported codec)")
    return container, stream


def video_info(path: PathLike) -> VideoInfo:
    """Frame rate, frame count (if the container states it) and size of the first video stream."""
    container, stream = _open_video(path)
    with container:
        return VideoInfo(
            fps=stream_fps(stream),
            frames=stream.frames or None,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
        )


def frame_to_tensor(frame: av.VideoFrame, width: int, height: int) -> torch.Tensor:
    """A decoded frame -> (3, H, W) float32 in [-1, 1]; high-bit-depth video keeps its precision."""
    deep = max(c.bits for c in frame.format.components) > 8
    fmt = "rgb48le" if deep else "rgb24"
    arr = frame.to_ndarray(format=fmt, width=width, height=height, interpolation=READ_INTERPOLATION)  # (H, W, 3)
    return unit_to_signed(arr.astype(np.float32) / (65535.0 if deep else 255.0))


def iter_video_frames(path: PathLike, max_frames: int | None = None) -> Iterator[torch.Tensor]:
    """Decode the first video stream frame by frame: yields (3, H, W) float32 tensors in [-1, 1].

    Every frame is converted to the first frame's size (a stream that changes resolution stays stackable).
    Raises MediaError when the file cannot be opened, when demuxing / decoding fails part-way (the message
    says how many frames were decoded), when no frame decodes at all, or when clearly fewer frames decode
    than the container header announces (a truncated file). Containers that state no frame count
    (Matroska, WebM) can only be checked through decoder errors.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    container, stream = _open_video(path)
    path = Path(path)
    stream.thread_type = "AUTO"  # frame + slice threads: several times faster on long videos
    width, height = stream.codec_context.width, stream.codec_context.height
    expected = stream.frames or None  # MP4 / MOV state it exactly; Matroska / WebM usually do not
    count = 0
    with container:
        try:
            for frame in container.decode(stream):
                yield frame_to_tensor(frame, width, height)
                count += 1
                if count == max_frames:
                    return
        except (av.FFmpegError, OSError) as err:
            raise MediaError(
                path,
                f"decoding failed after {count} frame(s), the file is truncated or corrupt ({decoder_reason(err)})",
            ) from err
    if count == 0:
        raise MediaError(path, "no decodable video frames")
    if expected is not None and count < expected - _frame_count_slack(expected):
        raise MediaError(
            path, f"truncated or corrupt: decoded {count} of the {expected} frames the container header announces"
        )


def _frame_count_slack(expected: int) -> int:
    """How many frames fewer than the header's count still count as a complete file.

    FFmpeg's decoders conceal damaged data and its MP4 demuxer can stop quietly at a truncated ``mdat``
    (measured: a faststart MP4 cut at 90% decodes 11 of 40 frames without an error), so the header's frame
    count is the only sign of such a file. Edit lists can legitimately drop a frame or two at the start,
    hence a small allowance; a file cut shorter than that loses nothing that matters.
    """
    return max(2, expected // 100)


def read_video(path: PathLike, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """A whole video (or its first ``max_frames`` frames) -> ((3, F, H, W) float32 in [-1, 1], fps)."""
    fps = video_info(path).fps
    frames = list(iter_video_frames(path, max_frames=max_frames))
    return torch.stack(frames, dim=1), fps


def _as_rate(fps: float | Fraction) -> Fraction:
    """A frame rate as a fraction: 29.97002997 -> 30000/1001, so containers store the exact NTSC rates."""
    if not fps or fps <= 0:
        raise ValueError(f"the frame rate must be positive, got {fps}")
    return Fraction(fps).limit_denominator(100_000)


class VideoWriter:
    """Write frames to a video file incrementally: H.264 (libx264) in .mp4 / .mkv / .mov, VP9 in .webm, GIF.

    Frames are 8-bit RGB converted to BT.709 limited-range YUV (tagged as such in the stream), yuv420p when
    width and height are even and yuv444p otherwise (4:2:0 needs even sizes). GIF frames are quantised
    to a 256-colour palette each and written by Pillow on close (so they stay in memory, 1 byte a pixel;
    Pillow merges identical consecutive frames into one longer frame).

    The file is written under a temporary name next to ``path`` and renamed on :meth:`close`; used as a
    context manager, an exception deletes it, so a failed run never leaves a half-written ``path``.

    The encoded bytes are not bit-reproducible: multi-threaded libx264 in the PyAV wheel gives slightly
    different streams for identical frames from run to run on noisy content (measured: 2-4 variants in 30
    runs of the same 25 frames, even with frame threads); the frames handed to :meth:`write` are what to
    compare when exactness matters.
    """

    def __init__(self, path: PathLike, fps: float | Fraction, *, crf: int = DEFAULT_CRF, preset: str = "medium"):
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in VIDEO_WRITE_EXTENSIONS:
            raise MediaError(
                self.path, f"cannot write a video with this extension; use one of {VIDEO_WRITE_EXTENSIONS}"
            )
        if not self.path.parent.is_dir():
            raise MediaError(self.path, f"cannot write: the folder {self.path.parent} does not exist")
        self.rate = _as_rate(fps)
        self.crf, self.preset = crf, preset
        # Same extension: FFmpeg picks the container format from it.
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._gif: list[Image.Image] = []
        self.size: tuple[int, int] | None = None  # (H, W) of the first frame
        self.frames_written = 0

    def _open(self, height: int, width: int) -> None:
        self.size = (height, width)
        if self.suffix == ".gif":
            return
        pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        options = {"movflags": "+faststart"} if self.suffix in (".mp4", ".mov") else {}
        try:
            self._container = av.open(str(self._tmp), mode="w", options=options)
            if self.suffix == ".webm":
                stream = self._container.add_stream("libvpx-vp9", rate=self.rate)
                stream.options = {"crf": str(self.crf), "b": "0", "row-mt": "1"}
            else:
                stream = self._container.add_stream("libx264", rate=self.rate)
                stream.options = {"crf": str(self.crf), "preset": self.preset}
        except (av.FFmpegError, OSError) as err:
            raise MediaError(self.path, f"cannot write ({decoder_reason(err)})") from err
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        cc = stream.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1  # BT.709 (AVCOL_SPC/PRI/TRC_BT709)
        cc.color_range = av.video.reformatter.ColorRange.MPEG
        self._stream = stream

    def write(self, frames: torch.Tensor) -> None:
        """Append (3, H, W) or (3, F, H, W) frames in [-1, 1] (clamped)."""
        if frames.ndim == 3:
            frames = frames.unsqueeze(1)
        if frames.ndim != 4 or frames.shape[0] != 3:
            raise ValueError(f"VideoWriter.write takes (3, H, W) or (3, F, H, W) frames, got {tuple(frames.shape)}")
        for rgb in to_uint8(frames):  # (H, W, 3) uint8
            if self.size is None:
                self._open(*rgb.shape[:2])
            if rgb.shape[:2] != self.size:
                raise ValueError(f"all frames must be {self.size[0]}x{self.size[1]}, got {rgb.shape[0]}x{rgb.shape[1]}")
            if self.suffix == ".gif":
                self._gif.append(Image.fromarray(rgb).quantize(colors=256))
            else:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format=self._stream.pix_fmt,
                    dst_colorspace=av.video.reformatter.Colorspace.ITU709,
                    dst_color_range=av.video.reformatter.ColorRange.MPEG,
                    interpolation=WRITE_INTERPOLATION,
                )
                self._encode(frame)
            self.frames_written += 1

    def _encode(self, frame: av.VideoFrame | None) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.FFmpegError, OSError) as err:
            raise MediaError(self.path, f"cannot write ({decoder_reason(err)})") from err

    def close(self) -> Path:
        """Flush the encoder, finish the file and move it to ``path``."""
        if self.frames_written == 0:
            self.abort()
            raise MediaError(self.path, "no frames were given to write")
        if self.suffix == ".gif":
            duration = max(10, round(1000 / float(self.rate)))  # GIF delays are in 10 ms units
            first, *rest = self._gif
            first.save(self._tmp, format="GIF", save_all=True, append_images=rest, duration=duration, loop=0)
            self._gif = []
        else:
            self._encode(None)
            self._container.close()
            self._container = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop without producing ``path``: close quietly and delete the temporary file."""
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                self._container.close()
            self._container = None
        self._gif = []
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:  # a failed flush, or a signal while finishing: still no half-written file
            self.abort()
            raise


def write_video(path: PathLike, frames: torch.Tensor, fps: float | Fraction, crf: int = DEFAULT_CRF) -> Path:
    """Write (3, F, H, W) frames in [-1, 1] (clamped) as a video; see :class:`VideoWriter` for formats."""
    with VideoWriter(path, fps, crf=crf) as writer:
        writer.write(frames)
    return Path(path)
