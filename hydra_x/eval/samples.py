"""Finite, ordered evaluation data: image / video folders, WebDataset shards, or the embedded held-out set.

Every item has a fixed index (sorted file order; shard order then order inside the shard; the k-th
embedded crop), so runs are reproducible and torchrun ranks can split items by index (item i goes to rank
i mod world) and still reduce exactly as one process does. ``--max-samples N`` keeps the first N items.

Nothing is dropped silently: an item that cannot be used (empty, corrupt, truncated, too few frames for a
clip) is returned as a :class:`Skipped` entry with its reason, and the report lists it. Truncated videos follow
the rule training and ``hydra-x reconstruct`` follow (hydra_x.data.failures): a clip (the first frames) that
needs a frame past the last one that decodes is skipped as corrupt; one that lies entirely before it is
evaluated, since its frames are exactly the complete file's (the cut after it is not looked for).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from hydra_x.data.buckets import FrameFitter
from hydra_x.data.config import DataSourceError
from hydra_x.data.embedded import heldout_clip, heldout_image  # the k-th item is heldout_images(n)[k]
from hydra_x.data.folders import VIDEO_EXTENSIONS, ClipSpec, decode_clip, decode_image_bytes, list_files, skip_entry
from hydra_x.data.media import IMAGE_EXTENSIONS, MediaError, read_image
from hydra_x.data.shards import IMAGE_KEYS, VIDEO_KEYS, ShardFailure, expand_shards, iter_shard
from hydra_x.eval.protocols import Protocol, preprocess

EMBEDDED = "embedded"
EMBEDDED_COUNT = 24  # held-out crops / clips of the embedded set (8 per photograph) unless --max-samples


class DataSpecError(DataSourceError):
    """The data set cannot be used at all (missing path, no files, no usable sample): training's error too."""


@dataclass
class Sample:
    index: int
    name: str
    x: torch.Tensor  # (3, S, S) or (3, F, S, S) in [-1, 1], preprocessed by the protocol


@dataclass
class Skipped:
    index: int
    name: str
    reason: str  # "category: problem", the categories of hydra_x.data.failures.SKIP_CATEGORIES


def _is_shard_pattern(path: str) -> bool:
    return path.endswith(".tar") or glob.has_magic(path) or ("{" in path and ".." in path)


class EvalData:
    """The items of one data set under one protocol; iterate with :meth:`items` (optionally one rank's share)."""

    def __init__(self, data: str, protocol: Protocol) -> None:
        self.data, self.protocol, self.media = data, protocol, protocol.media
        self.clip = ClipSpec(protocol.frames, protocol.frame_stride) if self.media == "video" else None
        self.files: list[Path] = []
        self.shards: list[str] = []
        if data == EMBEDDED:
            self.kind = f"embedded_{self.media}s"
            self.count: int | None = min(EMBEDDED_COUNT, protocol.max_samples or EMBEDDED_COUNT)
            return
        exts = IMAGE_EXTENSIONS if self.media == "image" else VIDEO_EXTENSIONS
        if os.path.isdir(data):
            self.files = list_files(data, exts)
            if not self.files:
                self.shards = expand_shards(data)
        elif _is_shard_pattern(data):
            self.shards = expand_shards(data)
            if not self.shards:
                raise DataSpecError(f"--data {data}: no shard file (.tar) matches")
        else:
            raise DataSpecError(f"--data {data}: no such folder (give a folder, shards like 'dir/*.tar', or embedded)")
        if self.shards:
            self.kind, self.count = f"{self.media}_shards", None  # counted while reading
        elif self.files:
            self.kind = f"{self.media}_folder"
            self.files = self.files[: protocol.max_samples] if protocol.max_samples else self.files
            self.count = len(self.files)
        else:
            names = ", ".join(sorted(exts))
            raise DataSpecError(f"--data {data}: the folder holds no {self.media} files ({names}) and no .tar shards")

    def describe(self) -> dict:
        return {"path": self.data, "kind": self.kind, "media": self.media, "shards": len(self.shards) or None}

    # ------------------------------------------------------------------ items

    def items(self, rank: int = 0, world: int = 1) -> Iterator[Sample | Skipped]:
        """This rank's items (index i with i % world == rank) in index order, decoded and preprocessed."""
        if self.shards:
            yield from self._shard_items(lambda i: i % world == rank, report_shards=rank == 0)
            return
        for i in range(rank, self.count, world):
            yield self._load(i)

    def load(self, indices: set[int]) -> dict[int, Sample]:
        """Re-read the usable items with these indices (for the pictures of median samples)."""
        if self.shards:
            found = self._shard_items(lambda i: i in indices, report_shards=False)
        else:
            found = (self._load(i) for i in sorted(indices))
        return {s.index: s for s in found if isinstance(s, Sample)}

    def _load(self, i: int) -> Sample | Skipped:
        size = self.protocol.size
        if self.kind.startswith("embedded"):
            if self.media == "image":
                photo, x = heldout_image(i, size)
                return Sample(i, f"embedded/image/{photo}/{i}", x)
            photo, x = heldout_clip(i, (self.clip.frames - 1) * self.clip.stride + 1, size)
            return Sample(i, f"embedded/video/{photo}/{i}", x[:, :: self.clip.stride].contiguous())
        path = self.files[i]
        try:
            return Sample(i, str(path), self._decode(path, str(path)))
        except MediaError as err:
            return Skipped(i, *skip_entry(err))
        except OSError as err:  # vanished or unreadable since the listing
            return Skipped(i, str(path), f"corrupt: cannot read ({type(err).__name__}: {err})")

    def _decode(self, src: str | Path | bytes, name: str) -> torch.Tensor:
        size = self.protocol.size
        if self.media == "image":
            x = decode_image_bytes(src, name) if isinstance(src, bytes) else read_image(src)
            return preprocess(x, size)
        # Frame by frame: only the clip's frames are decoded and each is resized and cropped at once.
        fit = lambda h, w: FrameFitter(h, w, (size, size), None, False)  # noqa: E731
        return decode_clip(src, name, self.clip, 0.0, fit)

    def _shard_items(self, wanted, report_shards: bool) -> Iterator[Sample | Skipped]:
        keys = IMAGE_KEYS if self.media == "image" else VIDEO_KEYS
        limit = self.protocol.max_samples
        i = 0
        for shard in self.shards:
            try:
                for _, sample in iter_shard(shard):
                    if limit is not None and i >= limit:
                        return
                    if wanted(i):
                        yield self._shard_sample(i, shard, sample, keys)
                    i += 1
            except ShardFailure as err:
                if report_shards:  # every rank reads every shard: one of them reports it
                    yield Skipped(-1, shard, str(err))

    def _shard_sample(self, i: int, shard: str, sample: dict, keys: tuple[str, ...]) -> Sample | Skipped:
        name = f"{shard}:{sample['__key__']}"
        member = next((k for k in sample if not k.startswith("__") and k.rsplit(".", 1)[-1] in keys), None)
        if member is None:
            have = ", ".join(sorted(k for k in sample if not k.startswith("__"))) or "nothing"
            return Skipped(i, name, f"no_media: no {self.media} member in the sample (has: {have})")
        try:
            return Sample(i, name, self._decode(sample[member], name))
        except MediaError as err:
            return Skipped(i, *skip_entry(err))
