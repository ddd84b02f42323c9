"""Image and video folders as a training source: the scan, and the map-style source over its files.

Folders are scanned once (recursively, sorted, hidden files ignored): image sizes come from Pillow's lazy
header read, video sizes and frame counts from the container header, so every file is put into its aspect
bucket before training starts. Files that fail the scan (empty, unreadable header, a clip that is clearly
too short) are left out and reported; files that fail later (truncated data, a broken frame) are skipped
when they are met and replaced by the next candidate (see :mod:`hydra_x.data.loader`), and remembered
(:class:`~hydra_x.data.failures.FailureMemory`) so that they are not decoded or reported again.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hydra_x.data.buckets import Bucket, augment_params, hash_uniform, nearest_bucket, resize_crop, sample_rng
from hydra_x.data.config import DataConfig, DataSourceError, SourceConfig
from hydra_x.data.failures import FailureMemory, SampleError, skip_entry
from hydra_x.data.folders import (
    VIDEO_EXTENSIONS,
    ClipSpec,
    _open,
    _reason,
    _spec_text,
    image_header_size,
    list_files,
    load_clip,
)
from hydra_x.data.media import IMAGE_EXTENSIONS, MediaError, read_image
from hydra_x.data.video import stream_fps

_TAG_PERM, _TAG_RETRY, _TAG_AUG = 11, 12, 13
RETRIES_IN_BUCKET = 8  # replacement candidates drawn from the failed sample's bucket before any other


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
        rate = stream_fps(stream)
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
    of any bucket (cropped to the batch's bucket, never squashed). Files that failed are remembered by index
    (``memory``, per process), which saves decoding them again and changes no outcome.
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
        self.memory = FailureMemory()

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
        """(file path, tensor fitted to the group's bucket); raises MediaError for a bad file (``seen`` set
        when it failed before in this process)."""
        i = self._file(group, position, attempt)
        path = self.index.paths[i]
        bucket = self.buckets[group]
        with self.memory.watch(i, path) as extent:
            rng = sample_rng(self.cfg.seed, _TAG_AUG, self.sid, group, position, attempt)
            if self.media == "image":
                crop, flip = augment_params(rng, self.cfg.random_crop, self.cfg.hflip)
                return path, resize_crop(read_image(path), bucket, crop, flip)
            return path, load_clip(path, path, self.spec, rng, self.cfg, lambda h, w: bucket, extent)


def open_folder(sc: SourceConfig, source_id: int, cfg: DataConfig, buckets: tuple[Bucket, ...]) -> FolderSource:
    """The source of an ``image_folder`` / ``video_folder`` entry; DataSourceError when it has no usable file."""
    index = scan_folder(sc.path, sc.media, ClipSpec.from_config(cfg))  # the loader checked that it is a folder
    if not index.paths:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS if sc.media == "image" else VIDEO_EXTENSIONS))
        if not index.skipped:
            raise DataSourceError(f"data source {sc.name}: the folder holds no {sc.media} files ({exts})")
        counts = Counter(reason.split(":", 1)[0] for _, reason in index.skipped)
        first, why = index.skipped[0]
        raise DataSourceError(
            f"data source {sc.name}: no usable {sc.media} file, all {len(index.skipped)} are unusable "
            f"({', '.join(f'{n} {c}' for c, n in sorted(counts.items()))}), e.g. {first}: {why.split(': ', 1)[-1]}"
        )
    return FolderSource(index, source_id, cfg, buckets)
