"""Image and video folders, and the decoding every file-backed source shares (folders and shards).

Folders are scanned once (recursively, sorted, hidden files ignored): image sizes come from Pillow's lazy
header read, video sizes and frame counts from the container header, so every file is put into its aspect
bucket before training starts. Files that fail the scan (empty, unreadable header, a clip that is clearly
too short) are left out and reported; files that fail later (truncated data, a broken frame) are skipped
when they are met and replaced by the next candidate (see :mod:`hydra_x.data.loader`).

Clips: ``clip_frames`` frames, either every ``frame_stride``-th decoded frame after a random start time,
or resampled to ``fps`` by timestamp (each target time takes the frame on screen then, so variable frame
rates are handled). Only what is needed is decoded: a seek to the keyframe before the start, then frames
up to the last one needed. Every frame gets the clip's one crop and flip as it is decoded.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from hydra_x.data.buckets import (
    Bucket,
    FrameFitter,
    augment_params,
    hash_uniform,
    nearest_bucket,
    resize_crop,
    sample_rng,
)
from hydra_x.data.config import DataConfig
from hydra_x.data.media import IMAGE_EXTENSIONS, MediaError, decode_image, read_image
from hydra_x.data.video import frame_to_tensor

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv", ".3gp"}
)

# Categories a skipped sample is counted under (the text before ':' in Batch.skipped reasons).
SKIP_CATEGORIES = ("empty", "corrupt", "undecodable", "no_video_stream", "too_short", "no_media")

_TAG_PERM, _TAG_RETRY, _TAG_AUG = 11, 12, 13
RETRIES_IN_BUCKET = 8  # replacement candidates drawn from the failed sample's bucket before any other


class SampleError(MediaError):
    """A sample that cannot be used; ``category`` is one of SKIP_CATEGORIES."""

    def __init__(self, name: str | os.PathLike, problem: str, category: str):
        super().__init__(name, problem)
        self.category = category


def skip_category(err: MediaError) -> str:
    """The counter a failed sample goes to, from the error (media.py's messages or ours)."""
    if isinstance(err, SampleError):
        return err.category
    text = err.problem.lower()
    if "empty file" in text:
        return "empty"
    if "no video stream" in text:
        return "no_video_stream"
    if "decoder" in text or "codec" in text or "no frame size" in text:
        return "undecodable"
    return "corrupt"


def skip_entry(err: MediaError) -> tuple[str, str]:
    """(file or key, "category: problem") as it goes into Batch.skipped."""
    return str(err.path), f"{skip_category(err)}: {err.problem}"


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
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # orientations that swap the axes
                w, h = h, w
    except UnidentifiedImageError:
        raise SampleError(path, "not a readable image (corrupt, or a format Pillow does not know)", "corrupt") from None
    except Exception as err:
        raise SampleError(path, f"unreadable image header ({_reason(err)})", "corrupt") from err
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
        container = av.open(io.BytesIO(src) if isinstance(src, bytes) else str(src), "r", metadata_errors="replace")
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
    rate = next((float(r) for r in (stream.average_rate, stream.guessed_rate) if r and r > 0), 25.0)
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
) -> torch.Tensor:
    """Decode one clip -> (3, F, h, w): the frames ``spec`` asks for, starting at fraction ``u_start``.

    ``fitter(H, W)`` is called once with the video's size and returns the per-frame transform (resize,
    crop, flip). If the random start leaves too few frames (a variable frame rate, a header that
    overstates the duration), the clip is taken from the start instead; if even that is short,
    SampleError "too_short", or "corrupt" when fewer frames decode than the header announces.
    """
    container, stream = _open(src, name)
    with container:
        t0, start, rate, header_frames = _clip_plan(stream, container, spec, name, u_start)
        frames, decoded = _collect(container, stream, name, spec, t0, start, rate, fitter)
    if frames is None and t0 > start:  # from the start, in a fresh container (the first try drained the decoder)
        container, stream = _open(src, name)
        with container:
            frames, decoded = _collect(container, stream, name, spec, start, start, rate, fitter)
    if frames is not None:
        return torch.stack(frames, dim=1)
    if header_frames and decoded < header_frames - max(2, header_frames // 100):
        raise SampleError(
            name, f"truncated or corrupt: decoded {decoded} of the {header_frames} frames announced", "corrupt"
        )
    raise SampleError(name, f"too few frames for a clip of {spec.frames} ({_spec_text(spec)})", "too_short")


def _spec_text(spec: ClipSpec) -> str:
    return f"at {spec.fps:g} fps" if spec.fps is not None else f"stride {spec.stride}"


def _collect(container, stream, name, spec, t0, start, rate, fitter) -> tuple[list[torch.Tensor] | None, int]:
    """(the frames of one clip starting at time t0, or None when the video ends first; frames decoded)."""
    eps = 1e-4  # seconds: timestamps are rationals rounded to floats
    stream.thread_type = "AUTO"  # frame and slice threads (set before the decoder opens)
    if t0 > start + eps:
        try:
            container.seek(int(t0 / stream.time_base), stream=stream, backward=True)
        except (av.FFmpegError, OSError) as err:
            raise SampleError(name, f"cannot seek, truncated or corrupt ({_reason(err)})", "corrupt") from err
    width, height = stream.codec_context.width, stream.codec_context.height
    fit = fitter(height, width)
    out: list[torch.Tensor] = []
    targets = None if spec.fps is None else [t0 + m / spec.fps for m in range(spec.frames)]
    prev, prev_t, prev_x = None, 0.0, None
    count = kept = 0  # frames decoded; frames at or after t0 (stride mode)
    try:
        for frame in container.decode(stream):
            ft = frame.time if frame.time is not None else start + count / rate
            count += 1
            if targets is None:  # stride mode: every stride-th frame from the first one at t0
                if ft < t0 - 0.5 / rate:
                    continue
                if kept % spec.stride == 0:
                    out.append(fit(frame_to_tensor(frame, width, height)))
                    if len(out) == spec.frames:
                        return out, count
                kept += 1
                continue
            # fps mode: each target time before this frame shows the frame before it
            cur_x = None
            while len(out) < spec.frames and targets[len(out)] < ft - eps:
                if prev is None:  # t0 before the first frame: the first frame stands in
                    cur_x = cur_x if cur_x is not None else fit(frame_to_tensor(frame, width, height))
                    out.append(cur_x)
                    continue
                prev_x = prev_x if prev_x is not None else fit(frame_to_tensor(prev, width, height))
                out.append(prev_x)
            if len(out) == spec.frames:
                return out, count
            prev, prev_t, prev_x = frame, ft, cur_x
    except (av.FFmpegError, OSError, ValueError) as err:
        problem = f"decoding failed after {count} frame(s), truncated or corrupt ({_reason(err)})"
        raise SampleError(name, problem, "corrupt") from err
    if count == 0 and t0 <= start + eps:
        raise SampleError(name, "no decodable video frames", "undecodable")
    if targets is not None and prev is not None:
        # The last frame stays on screen for one frame interval.
        while len(out) < spec.frames and targets[len(out)] < prev_t + 1 / rate - eps:
            prev_x = prev_x if prev_x is not None else fit(frame_to_tensor(prev, width, height))
            out.append(prev_x)
        if len(out) == spec.frames:
            return out, count
    return None, count


def load_clip(
    src: str | Path | bytes,
    name: str,
    spec: ClipSpec,
    rng: np.random.Generator,
    cfg: DataConfig,
    bucket_for: Callable[[int, int], Bucket],
) -> torch.Tensor:
    """A training clip: random start, bucket from the video's size, the same random crop / flip on every frame."""
    crop, flip = augment_params(rng, cfg.random_crop, cfg.hflip)
    u_start = float(rng.random())
    return decode_clip(src, name, spec, u_start, lambda h, w: FrameFitter(h, w, bucket_for(h, w), crop, flip))


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


@dataclass
class FolderIndex:
    """The usable files of a folder with their (H, W), and the files the scan left out."""

    root: str
    media: str  # "image" | "video"
    paths: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, "category: problem")


def _probe_video(path: Path, spec: ClipSpec) -> tuple[int, int]:
    container, stream = _open(path, str(path))
    with container:
        cc = stream.codec_context
        rate = next((float(r) for r in (stream.average_rate, stream.guessed_rate) if r and r > 0), 25.0)
        if stream.frames and stream.frames < spec.min_source_frames(rate):
            raise SampleError(
                path,
                f"only {stream.frames} frames, a clip needs {spec.min_source_frames(rate)} ({_spec_text(spec)})",
                "too_short",
            )
        return cc.height, cc.width


def scan_folder(root: str | Path, media: str, spec: ClipSpec | None = None, threads: int = 8) -> FolderIndex:
    """Scan an image or video folder: every readable file's size; unreadable ones reported as skipped."""
    exts = IMAGE_EXTENSIONS if media == "image" else VIDEO_EXTENSIONS
    files = list_files(root, exts)
    if media == "image":
        probe = image_header_size
    else:
        assert spec is not None
        probe = lambda p: _probe_video(p, spec)

    def one(path: Path):
        try:
            return probe(path)
        except MediaError as err:
            return err
        except OSError as err:  # vanished, permission denied ...
            return SampleError(path, f"cannot read ({_reason(err)})", "corrupt")

    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(pool.map(one, files))
    index = FolderIndex(str(root), media)
    for path, res in zip(files, results):
        if isinstance(res, MediaError):
            index.skipped.append(skip_entry(res))
        else:
            index.paths.append(str(path))
            index.sizes.append(res)
    return index


class FolderSource:
    """A map-style source over a scanned folder: files grouped by bucket; sample = f(group, position, attempt).

    Position p of a bucket group's stream is the p-th file of the group's per-epoch permutation (epoch =
    p // group size); a failed sample is replaced by seeded random files, first of the same bucket, then
    of any bucket (cropped to the batch's bucket, never squashed).
    """

    def __init__(self, index: FolderIndex, source_id: int, cfg: DataConfig, buckets: tuple[Bucket, ...]):
        self.index, self.sid, self.cfg = index, source_id, cfg
        self.media = index.media
        self.name = f"{index.media}_folder:{index.root}"
        self.spec = ClipSpec.from_config(cfg)
        nearest = [nearest_bucket(h, w, buckets) for h, w in index.sizes]
        used = sorted(set(nearest))
        self.buckets = [buckets[b] for b in used]
        self.groups = [np.array([i for i, b in enumerate(nearest) if b == ub], dtype=np.int64) for ub in used]
        self.group_weights = np.array([len(g) for g in self.groups], dtype=np.float64)
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.index.paths)

    def _file(self, group: int, position: int, attempt: int) -> int:
        members = self.groups[group]
        if attempt == 0:
            epoch, pos = divmod(position, len(members))
            key = (group, epoch)
            if key not in self._perms:
                if len(self._perms) > 2 * len(self.groups):
                    self._perms.clear()
                self._perms[key] = sample_rng(self.cfg.seed, _TAG_PERM, self.sid, group, epoch).permutation(
                    len(members)
                )
            return int(members[self._perms[key][pos]])
        u = hash_uniform(self.cfg.seed, _TAG_RETRY, self.sid, group, position, attempt)[0]
        if attempt <= RETRIES_IN_BUCKET:
            return int(members[int(u * len(members))])
        return int(u * len(self.index.paths))

    def sample(self, group: int, position: int, attempt: int) -> tuple[str, torch.Tensor]:
        """(file path, tensor fitted to the group's bucket); raises MediaError for a bad file."""
        i = self._file(group, position, attempt)
        path = self.index.paths[i]
        bucket = self.buckets[group]
        rng = sample_rng(self.cfg.seed, _TAG_AUG, self.sid, group, position, attempt)
        if self.media == "image":
            crop, flip = augment_params(rng, self.cfg.random_crop, self.cfg.hflip)
            return path, resize_crop(read_image(path), bucket, crop, flip)
        return path, load_clip(path, path, self.spec, rng, self.cfg, lambda h, w: bucket)
