"""The decoding every file-backed source shares (folders, shards, evaluation data), and folder listings.

Images decode whole (Pillow). Clips: ``clip_frames`` frames, either every ``frame_stride``-th decoded frame
after a random start time, or resampled to ``fps`` by timestamp (each target time takes the frame on screen
then, so variable frame rates are handled). Only what is needed is decoded: a seek to the keyframe before the
start, then frames up to the last one needed. Every frame gets the clip's one crop and flip as it is decoded.
A clip that runs past the end of a video whose frames stop short of what its header announces is refused
(the rule for truncated videos, :mod:`hydra_x.data.failures`). The folder sources are in
:mod:`hydra_x.data.folder_source`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
import torch

from hydra_x.data.buckets import Bucket, FrameFitter, augment_params
from hydra_x.data.config import DataConfig
from hydra_x.data.failures import (  # noqa: F401 - re-exported: where the data modules and tests find them
    SKIP_CATEGORIES,
    SampleError,
    VideoExtent,
    falls_short,
    skip_category,
    skip_entry,
)
from hydra_x.data.media import MediaError, decode_image, read_image_size
from hydra_x.data.video import frame_to_tensor, open_container, stream_fps

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv", ".3gp"}
)
_EPS = 1e-4  # seconds: timestamps are rationals rounded to floats


# ---------------------------------------------------------------------------- decoding (paths or bytes)


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text if isinstance(err, av.FFmpegError) else f"{type(err).__name__}: {text}"


def _check_size(src: str | Path | bytes, name: str) -> None:
    size = len(src) if isinstance(src, bytes) else os.path.getsize(src)
    if size == 0:
        raise SampleError(name, "empty file (0 bytes)", "empty")


def decode_image_bytes(data: bytes, name: str) -> torch.Tensor:
    """An encoded image (a shard member) -> (3, H, W) in [-1, 1], exactly as media.read_image reads files."""
    _check_size(data, name)
    return decode_image(io.BytesIO(data), name)  # a MediaError counts as "corrupt" (skip_category)


def image_header_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file as read_image will return it (EXIF rotation applied), from its header only."""
    _check_size(path, str(path))
    try:
        h, w = read_image_size(path, path)
    except MediaError as err:  # unreadable header, or over the pixel limit: the same rule as read_image
        raise SampleError(path, err.problem, "corrupt") from None
    if w < 1 or h < 1:
        raise SampleError(path, f"image of size {w}x{h}", "corrupt")
    return h, w


@dataclass(frozen=True)
class ClipSpec:
    """Which frames make a clip: ``frames`` frames, every ``stride``-th, or resampled to ``fps``."""

    frames: int
    stride: int = 1
    fps: float | None = None

    @classmethod
    def from_config(cls, cfg: DataConfig) -> ClipSpec:
        return cls(cfg.clip_frames, cfg.frame_stride, cfg.fps)

    def min_source_frames(self, source_fps: float) -> int:
        """Fewest frames a video at ``source_fps`` needs to hold one clip."""
        if self.fps is None:
            return (self.frames - 1) * self.stride + 1
        return math.floor((self.frames - 1) / self.fps * source_fps + 1e-6) + 1


def _open(src: str | Path | bytes, name: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    _check_size(src, name)
    try:
        container = open_container(io.BytesIO(src) if isinstance(src, bytes) else src)
    except Exception as err:  # FFmpegError, OSError, UnicodeDecodeError ...
        raise SampleError(name, f"not a readable video, truncated or corrupt ({_reason(err)})", "corrupt") from err
    if not container.streams.video:
        container.close()
        raise SampleError(name, "has no video stream", "no_video_stream")
    stream = container.streams.video[0]
    cc = stream.codec_context
    if cc is None or not cc.width or not cc.height:
        container.close()
        raise SampleError(name, "the video stream has no decoder or no frame size (unsupported codec?)", "undecodable")
    return container, stream


def _clip_plan(stream, container, spec: ClipSpec, name: str, u_start: float) -> tuple[float, float, float, int | None]:
    """(start time wanted, stream start time, frame rate, header frame count) of a clip."""
    rate = stream_fps(stream)
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    if stream.duration and tb:
        duration = float(stream.duration * tb)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = None
    header_frames = stream.frames or None
    if header_frames is not None and header_frames < spec.min_source_frames(rate):
        raise SampleError(
            name,
            f"only {header_frames} frames, a clip needs {spec.min_source_frames(rate)} ({_spec_text(spec)})",
            "too_short",
        )
    if spec.fps is None:
        total = header_frames or (round(duration * rate) if duration else None)
        need = (spec.frames - 1) * spec.stride + 1
        first = int(u_start * (total - need + 1)) if total and total > need else 0
        return start + first / rate, start, rate, header_frames
    room = (duration - 1 / rate - (spec.frames - 1) / spec.fps) if duration else 0.0
    # The first target on a frame time (of the average rate), so a rate dividing the source's picks whole frames.
    return start + math.floor(u_start * max(0.0, room) * rate + 1e-6) / rate, start, rate, header_frames


def decode_clip(
    src: str | Path | bytes,
    name: str,
    spec: ClipSpec,
    u_start: float,
    fitter: Callable[[int, int], Callable[[torch.Tensor], torch.Tensor]],
    extent: VideoExtent | None = None,
) -> torch.Tensor:
    """Decode one clip -> (3, F, h, w): the frames ``spec`` asks for, starting at fraction ``u_start``.

    ``fitter(H, W)`` is called once with the video's size and returns the per-frame transform (resize,
    crop, flip). If the random start leaves too few frames, the video is decoded from its start to its end
    once (filling ``extent``, which a caller may keep for the file's later clips): a truncated video refuses
    the clip (SampleError "corrupt"); any other (a variable frame rate, a header that overstates the
    duration) gives the clip from its start instead, or SampleError "too_short" when even that is short.
    """
    extent = extent if extent is not None else VideoExtent()
    container, stream = _open(src, name)
    with container:
        t0, start, rate, header_frames = _clip_plan(stream, container, spec, name, u_start)
        if extent.truncated and _starts_past(extent, spec, t0, rate):
            raise _cut(name, header_frames, extent, whole_file=False)  # decoding would find no frame there
        got = _collect(container, stream, name, spec, t0, start, rate, fitter)
    if got.frames is not None:
        return torch.stack(got.frames, dim=1)
    if t0 <= start + _EPS:  # this try decoded the whole video from its start
        _learn(extent, got, header_frames)
        raise _cut(name, header_frames, extent, whole_file=True) if extent.truncated else _too_short(name, spec)
    if extent.truncated:
        raise _cut(name, header_frames, extent, whole_file=False)
    # From the start, in a fresh container (the first try drained the decoder); to the end the first time.
    container, stream = _open(src, name)
    with container:
        count_all = extent.frames is None
        got = _collect(container, stream, name, spec, start, start, rate, fitter, count_all=count_all)
    if count_all or got.frames is None:
        _learn(extent, got, header_frames)
    if extent.truncated:
        raise _cut(name, header_frames, extent, whole_file=got.frames is None)
    if got.frames is None:
        raise _too_short(name, spec)
    return torch.stack(got.frames, dim=1)


def _learn(extent: VideoExtent, got: _Decoded, header_frames: int | None) -> None:
    extent.frames, extent.last_time = got.count, got.last
    extent.truncated = got.broken or falls_short(got.count, header_frames)


def _starts_past(extent: VideoExtent, spec: ClipSpec, t0: float, rate: float) -> bool:
    """Whether a clip starting at t0 begins after the last frame of a cut video (the tests _collect applies)."""
    if spec.fps is None:
        return extent.last_time < t0 - 0.5 / rate
    return t0 >= extent.last_time + 1 / rate - _EPS


def _cut(name: str, header_frames: int | None, extent: VideoExtent, whole_file: bool) -> SampleError:
    what = (
        f"decoded {extent.frames} of the {header_frames} frames the header announces"
        if header_frames
        else f"decoding fails after {extent.frames} frame(s)"
    )
    need = "too few for a clip" if whole_file else "the clip needs frames past the last one that decodes"
    return SampleError(name, f"truncated or corrupt: {what}; {need}", "corrupt", whole_file=whole_file)


def _too_short(name: str, spec: ClipSpec) -> SampleError:
    return SampleError(name, f"too few frames for a clip of {spec.frames} ({_spec_text(spec)})", "too_short")


def _spec_text(spec: ClipSpec) -> str:
    return f"at {spec.fps:g} fps" if spec.fps is not None else f"stride {spec.stride}"


class _Decoded(NamedTuple):
    frames: list[torch.Tensor] | None  # the clip, or None when the video ended first
    count: int  # frames decoded
    last: float  # presentation time of the last one decoded, seconds
    broken: bool  # a decoding error ended a count_all pass after the clip was complete


def _collect(container, stream, name, spec, t0, start, rate, fitter, count_all: bool = False) -> _Decoded:
    """The frames of one clip starting at time t0; ``count_all``: then decode on to the end, counting only."""
    stream.thread_type = "AUTO"  # frame and slice threads (set before the decoder opens)
    if t0 > start + _EPS:
        try:
            container.seek(int(t0 / stream.time_base), stream=stream, backward=True)
        except (av.FFmpegError, OSError) as err:
            problem = f"cannot seek, truncated or corrupt ({_reason(err)})"
            raise SampleError(name, problem, "corrupt", whole_file=False) from err
    width, height = stream.codec_context.width, stream.codec_context.height
    fit = fitter(height, width)
    out: list[torch.Tensor] = []
    targets = None if spec.fps is None else [t0 + m / spec.fps for m in range(spec.frames)]
    prev, prev_t, prev_x = None, 0.0, None
    count = kept = 0  # frames decoded; frames at or after t0 (stride mode)
    last = -math.inf
    try:
        for frame in container.decode(stream):
            ft = frame.time if frame.time is not None else start + count / rate
            count += 1
            last = max(last, ft)
            if len(out) == spec.frames:  # complete: counting on to the end
                continue
            if targets is None:  # stride mode: every stride-th frame from the first one at t0
                if ft < t0 - 0.5 / rate:
                    continue
                if kept % spec.stride == 0:
                    out.append(fit(frame_to_tensor(frame, width, height)))
                kept += 1
            else:  # fps mode: each target time before this frame shows the frame before it
                cur_x = None
                while len(out) < spec.frames and targets[len(out)] < ft - _EPS:
                    if prev is None:  # t0 before the first frame: the first frame stands in
                        cur_x = cur_x if cur_x is not None else fit(frame_to_tensor(frame, width, height))
                        out.append(cur_x)
                        continue
                    prev_x = prev_x if prev_x is not None else fit(frame_to_tensor(prev, width, height))
                    out.append(prev_x)
                prev, prev_t, prev_x = frame, ft, cur_x
            if len(out) == spec.frames and not count_all:
                return _Decoded(out, count, last, False)
    except (av.FFmpegError, OSError, ValueError) as err:
        if len(out) == spec.frames:
            return _Decoded(out, count, last, True)
        problem = f"decoding failed after {count} frame(s), truncated or corrupt ({_reason(err)})"
        raise SampleError(name, problem, "corrupt", whole_file=False) from err
    if count == 0 and t0 <= start + _EPS:
        raise SampleError(name, "no decodable video frames", "undecodable")
    if targets is not None and prev is not None:
        # The last frame stays on screen for one frame interval.
        while len(out) < spec.frames and targets[len(out)] < prev_t + 1 / rate - _EPS:
            prev_x = prev_x if prev_x is not None else fit(frame_to_tensor(prev, width, height))
            out.append(prev_x)
    return _Decoded(out if len(out) == spec.frames else None, count, last, False)


def load_clip(
    src: str | Path | bytes,
    name: str,
    spec: ClipSpec,
    rng: np.random.Generator,
    cfg: DataConfig,
    bucket_for: Callable[[int, int], Bucket],
    extent: VideoExtent | None = None,
) -> torch.Tensor:
    """A training clip: random start, bucket from the video's size, the same random crop / flip on every frame;
    ``extent``: what the caller remembers about this video (see decode_clip)."""
    crop, flip = augment_params(rng, cfg.random_crop, cfg.hflip)
    u_start = float(rng.random())
    fit = lambda h, w: FrameFitter(h, w, bucket_for(h, w), crop, flip)
    return decode_clip(src, name, spec, u_start, fit, extent)


# ---------------------------------------------------------------------------- folders


def list_files(root: str | Path, extensions: frozenset[str]) -> list[Path]:
    """Files under ``root`` (recursively, symlinks followed) with one of ``extensions``, sorted; hidden ignored."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and Path(f).suffix.lower() in extensions:
                out.append(Path(dirpath) / f)
    return sorted(out)
