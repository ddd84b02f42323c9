"""WebDataset tar shards of images or videos: reading with per-rank / per-worker splitting and an exact
resumable position, and a small tool to write them.

Format: plain tar files whose members are grouped into samples by key (``000123.jpg``, ``000123.json``),
parsed with the ``webdataset`` package's tar iterators. A sample's first image member (``jpg``, ``png``,
...) or video member (``mp4``, ``webm``, ...) is used, the others are ignored.

Splitting: each epoch the shard list is shuffled from (seed, epoch); consumer c of C = world_size *
workers takes shards c, c + C, ... of it (with fewer shards than consumers, consumer c re-reads shard
c mod n, with its own augmentations). Each consumer reads ``shard_interleave`` shards at a time and draws
its next sample from one of them in a seeded order, so neighbouring samples of one shard are spread out.
Within a shard samples come in the order written (``write`` shuffles when it writes).

Buckets: samples are decoded as they are read and wait in per-bucket queues until one bucket holds a
batch. A sample that has waited longer than ``4 * batch * buckets`` reads has its bucket forced: the next
samples are cropped into that bucket (never squashed) so nothing waits forever.

Position: a consumer's state is its reader's position at its oldest waiting sample plus the reads after it
already used; restoring replays those reads (decoding only the samples still waiting), so the stream
continues exactly, at the same world size and worker count. On another layout the loader restarts every
consumer at the beginning of the earliest saved epoch (samples of that epoch may repeat, none are lost).

Bad samples: each consumer remembers the samples that failed by (shard, sample number), so later epochs
refuse them without decoding (the outcome decoding gives, so positions stay exact) and report them once. A
truncated or unreadable shard is read again each epoch, its readable part used; the loader reports it once.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import random
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from hydra_x.data.buckets import Bucket, augment_params, hash_uniform, name_id, nearest_bucket, resize_crop, sample_rng
from hydra_x.data.config import DataConfig, DataSourceError
from hydra_x.data.failures import FailureMemory, SampleError, skip_entry
from hydra_x.data.folders import VIDEO_EXTENSIONS, ClipSpec, decode_image_bytes, list_files, load_clip
from hydra_x.data.media import IMAGE_EXTENSIONS, MediaError

IMAGE_KEYS = tuple(e[1:] for e in sorted(IMAGE_EXTENSIONS))
VIDEO_KEYS = tuple(e[1:] for e in sorted(VIDEO_EXTENSIONS))
_TAG_ORDER, _TAG_DRAW, _TAG_AUG = 31, 32, 33
MAX_CONSECUTIVE_FAILURES = 1000


def expand_shards(pattern: str) -> list[str]:
    """Shard files of a folder (``*.tar`` under it), a glob, or a brace pattern; sorted, existing only."""
    from braceexpand import braceexpand  # a dependency of webdataset

    if os.path.isdir(pattern):
        return [str(p) for p in list_files(pattern, frozenset({".tar"}))]
    out: list[str] = []
    for item in braceexpand(pattern):
        out.extend(sorted(glob.glob(item)) if glob.has_magic(item) else ([item] if os.path.isfile(item) else []))
    return sorted(dict.fromkeys(out))


@dataclass
class RawSample:
    shard: str
    index: int  # sample number inside the shard
    epoch: int
    copy: int  # which re-read of the shard (only when shards are fewer than consumers)
    key: str
    members: dict[str, bytes]

    @property
    def name(self) -> str:
        return f"{self.shard}:{self.key}"


class ShardFailure(Exception):
    pass


def iter_shard(path: str, skip: int = 0) -> Iterator[tuple[int, dict]]:
    """(sample number, webdataset sample dict) of one shard, from sample ``skip`` on; errors -> ShardFailure."""
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    if os.path.getsize(path) == 0:
        raise ShardFailure("empty: empty file (0 bytes)")
    i = 0
    try:
        with open(path, "rb") as f:
            files = ({**d, "__url__": path} for d in tar_file_iterator(f))
            for i, sample in enumerate(group_by_keys(files)):
                if i >= skip:
                    yield i, sample
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        at = f"after {i} sample(s)" if i else "at the start"
        raise ShardFailure(f"corrupt: shard truncated or corrupt {at} ({type(err).__name__}: {err})") from err


class ShardReader:
    """The sample stream of one consumer (a DataLoader worker of one rank) over a shard source."""

    def __init__(
        self,
        shards: list[str],
        consumer: int,
        consumers: int,
        seed: int,
        source_id: int,
        interleave: int,
        state: dict | None = None,
        start_epoch: int = 0,
        name: str = "shards",
    ):
        if not shards:
            raise ValueError("no shards")
        self.shards, self.consumer, self.consumers = shards, consumer, consumers
        self.seed, self.sid, self.interleave, self.name = seed, source_id, interleave, name
        state = state or {"epoch": start_epoch, "cursor": 0, "open": [], "draws": 0}
        self.epoch, self.cursor, self.draws = int(state["epoch"]), int(state["cursor"]), int(state["draws"])
        self.open: list[list[int]] = [[int(s), int(d)] for s, d in state["open"]]  # [shard, samples taken]
        self._iters: list[Iterator | None] = [None] * len(self.open)
        self._assigned_cache: tuple[int, list[int]] | None = None
        self._fresh_epoch = self.cursor == 0 and not self.open  # a whole epoch read here from its start
        self._epoch_samples = 0
        self.skipped: list[tuple[str, str]] = []
        self.mute = False  # while replaying reads whose skips were reported before

    def snapshot(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "open": [list(o) for o in self.open], "draws": self.draws}

    def assigned(self, epoch: int) -> list[int]:
        if self._assigned_cache is None or self._assigned_cache[0] != epoch:
            n, c = len(self.shards), self.consumers
            order = sample_rng(self.seed, _TAG_ORDER, self.sid, epoch).permutation(n)
            mine = order[self.consumer :: c].tolist() if n >= c else [int(order[self.consumer % n])]
            self._assigned_cache = (epoch, mine)
        return self._assigned_cache[1]

    def next(self) -> RawSample:
        while True:
            assigned = self.assigned(self.epoch)
            while len(self.open) < self.interleave and self.cursor < len(assigned):
                self.open.append([assigned[self.cursor], 0])
                self._iters.append(None)
                self.cursor += 1
            if not self.open:
                if self._fresh_epoch and self._epoch_samples == 0:
                    raise DataSourceError(
                        f"data source {self.name}: no readable sample in any of the {len(assigned)} shard(s) "
                        f"assigned to consumer {self.consumer} of {self.consumers} in epoch {self.epoch}"
                    )
                self.epoch, self.cursor, self._fresh_epoch, self._epoch_samples = self.epoch + 1, 0, True, 0
                continue
            k = int(hash_uniform(self.seed, _TAG_DRAW, self.sid, self.consumer, self.draws)[0] * len(self.open))
            self.draws += 1
            shard, done = self.open[k]
            path = self.shards[shard]
            if self._iters[k] is None:
                self._iters[k] = iter_shard(path, skip=done)
            try:
                index, sample = next(self._iters[k])
            except StopIteration:
                self._close(k)
                continue
            except ShardFailure as err:
                if not self.mute:
                    self.skipped.append((path, str(err)))
                self._close(k)
                continue
            self.open[k][1] = index + 1
            self._epoch_samples += 1
            n = len(self.shards)
            copy = self.consumer // n if n < self.consumers else 0
            members = {k2: v for k2, v in sample.items() if not k2.startswith("__")}
            return RawSample(path, index, self.epoch, copy, sample["__key__"], members)

    def _close(self, k: int) -> None:
        it = self._iters.pop(k)
        if it is not None:
            it.close()
        self.open.pop(k)

    def pop_skipped(self) -> list[tuple[str, str]]:
        out, self.skipped = self.skipped, []
        return out


@dataclass
class _Waiting:
    seq: int
    bucket: int
    key: str
    x: torch.Tensor


class ShardStream:
    """Bucketed batches from one consumer's shard stream, with an exact saved position."""

    def __init__(
        self,
        media: str,
        shards: list[str],
        source_id: int,
        cfg: DataConfig,
        buckets: tuple[Bucket, ...],
        consumer: int,
        consumers: int,
        state: dict | None = None,
        start_epoch: int = 0,
        name: str = "",
    ):
        self.media, self.sid, self.cfg, self.buckets = media, source_id, cfg, buckets
        self.name = name or f"{media}_shards #{source_id}"
        self.spec = ClipSpec.from_config(cfg)
        self.batch = cfg.batch_size(media)
        self.max_wait = 4 * self.batch * len(buckets)
        self._args = (shards, consumer, consumers, cfg.seed, source_id, cfg.shard_interleave)
        self.waiting: list[_Waiting] = []
        self.snaps: dict[int, dict] = {}  # reader position before each waiting sample
        self.used: set[int] = set()  # reads at or after the oldest waiting one that are used (or failed)
        self.seq = 0
        self.failures = 0
        self.memory = FailureMemory()  # per consumer, by (shard, sample number)
        if state is None:
            self.reader = ShardReader(*self._args, start_epoch=start_epoch, name=self.name)
        else:
            self._restore(state)

    # -- decoding

    def _process(self, raw: RawSample, forced: int | None) -> tuple[int, torch.Tensor]:
        # A sample that failed before is refused without decoding: every epoch re-reads the shards.
        with self.memory.watch((raw.shard, raw.index), raw.name) as extent:
            keys = IMAGE_KEYS if self.media == "image" else VIDEO_KEYS
            ext = next((e for e in raw.members if e.rsplit(".", 1)[-1] in keys), None)
            if ext is None:
                have = ", ".join(sorted(raw.members)) or "nothing"
                raise SampleError(raw.name, f"no {self.media} member in the sample (has: {have})", "no_media")
            data = raw.members[ext]
            parts = [self.cfg.seed, _TAG_AUG, self.sid, name_id(os.path.basename(raw.shard)), raw.index, raw.epoch]
            rng = sample_rng(*parts, *([raw.copy] if raw.copy else []))
            if self.media == "image":
                x = decode_image_bytes(data, raw.name)
                b = forced if forced is not None else nearest_bucket(x.shape[-2], x.shape[-1], self.buckets)
                crop, flip = augment_params(rng, self.cfg.random_crop, self.cfg.hflip)
                return b, resize_crop(x, self.buckets[b], crop, flip)
            chosen: list[int] = []

            def bucket_for(h: int, w: int) -> Bucket:
                chosen.append(forced if forced is not None else nearest_bucket(h, w, self.buckets))
                return self.buckets[chosen[0]]

            x = load_clip(data, raw.name, self.spec, rng, self.cfg, bucket_for, extent)
            return chosen[0], x

    # -- batches

    def _read(self) -> tuple[int, dict, RawSample]:
        snap = self.reader.snapshot()
        raw = self.reader.next()
        self.seq += 1
        return self.seq - 1, snap, raw

    def next_batch(self) -> tuple[list[str], list[torch.Tensor], Bucket, list[tuple[str, str]]]:
        """(keys, tensors, bucket, skipped) of this consumer's next batch."""
        skipped: list[tuple[str, str]] = []
        forced = None
        if self.waiting and self.seq - self.waiting[0].seq > self.max_wait:
            forced = self.waiting[0].bucket
        while True:
            seq, snap, raw = self._read()
            skipped.extend(self.reader.pop_skipped())
            try:
                b, x = self._process(raw, forced)
            except MediaError as err:
                if not getattr(err, "seen", False):  # reported when it first failed
                    skipped.append(skip_entry(err))
                self.used.add(seq)
                self.failures += 1
                if self.failures >= MAX_CONSECUTIVE_FAILURES:
                    raise DataSourceError(
                        f"data source {self.name}: {self.failures} samples in a row could not be used; last: {err}"
                    ) from err
                continue
            self.failures = 0
            self.waiting.append(_Waiting(seq, b, raw.name, x))
            self.snaps[seq] = snap
            group = [w for w in self.waiting if w.bucket == b]
            if len(group) >= self.batch:
                take = group[: self.batch]
                break
        taken = {w.seq for w in take}
        self.waiting = [w for w in self.waiting if w.seq not in taken]
        self.used |= taken
        base = self.waiting[0].seq if self.waiting else self.seq
        self.used = {s for s in self.used if s >= base}
        self.snaps = {w.seq: self.snaps[w.seq] for w in self.waiting}
        return [w.key for w in take], [w.x for w in take], self.buckets[take[0].bucket], skipped

    # -- position

    def state(self) -> dict:
        if self.waiting:
            base_seq, reader = self.waiting[0].seq, self.snaps[self.waiting[0].seq]
        else:
            base_seq, reader = self.seq, self.reader.snapshot()
        used = sorted(s for s in self.used if s >= base_seq)
        return {"reader": reader, "base_seq": base_seq, "end_seq": self.seq, "used": used, "failures": self.failures}

    def _restore(self, state: dict) -> None:
        self.reader = ShardReader(*self._args, state=state["reader"], name=self.name)
        self.seq = int(state["base_seq"])
        self.used = {int(s) for s in state["used"]}
        self.failures = int(state.get("failures", 0))
        self.reader.mute = True  # these reads happened before the position was saved: no new skips
        while self.seq < int(state["end_seq"]):
            seq, snap, raw = self._read()
            if seq in self.used:
                continue
            try:
                b, x = self._process(raw, None)
            except MediaError:  # the data changed since; it cannot wait in a queue
                self.used.add(seq)
                continue
            self.waiting.append(_Waiting(seq, b, raw.name, x))
            self.snaps[seq] = snap
        self.reader.pop_skipped()
        self.reader.mute = False


def epoch_of(state: dict) -> int:
    """The epoch a saved ShardStream state is in."""
    return int(state["reader"]["epoch"])


# ---------------------------------------------------------------------------- writing shards


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    files: list[Path], root: Path, out: Path, prefix: str, per_shard: int, seed: int | None = 0
) -> list[Path]:
    """Pack files (bytes as they are) into ``out/prefix-000000.tar``...; each sample is the file under
    ``<key>.<ext>`` plus ``<key>.json`` with its path relative to ``root``. Shuffled by ``seed`` (None: sorted)."""
    if per_shard < 1:
        raise ValueError(f"--per-shard must be at least 1, got {per_shard}")
    files = sorted(files)
    if seed is not None:
        random.Random(seed).shuffle(files)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for start in range(0, len(files), per_shard):
        path = out / f"{prefix}-{start // per_shard:06d}.tar"
        tmp = path.with_name(f".{path.name}.partial")
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i, f in enumerate(files[start : start + per_shard], start):
                key = f"{i:08d}"
                _add(tar, f"{key}{f.suffix.lower()}", f.read_bytes())
                meta = {"path": str(f.relative_to(root)) if f.is_relative_to(root) else str(f)}
                _add(tar, f"{key}.json", json.dumps(meta).encode())
        os.replace(tmp, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hydra_x.data.shards",
        description="Pack image and/or video folders into WebDataset tar shards (files are stored as they are).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write shards from folders")
    w.add_argument("--images", type=Path, help="image folder (recursive) -> OUT/images-NNNNNN.tar")
    w.add_argument("--videos", type=Path, help="video folder (recursive) -> OUT/videos-NNNNNN.tar")
    w.add_argument("--out", type=Path, required=True, help="output folder")
    w.add_argument("--per-shard", type=int, default=1000, help="samples per shard (default 1000)")
    w.add_argument("--seed", type=int, default=0, help="seed of the file order shuffle (default 0)")
    w.add_argument("--no-shuffle", action="store_true", help="keep the sorted file order")
    args = parser.parse_args(argv)
    if args.images is None and args.videos is None:
        parser.error("give --images and/or --videos")
    for folder, exts, prefix in ((args.images, IMAGE_EXTENSIONS, "images"), (args.videos, VIDEO_EXTENSIONS, "videos")):
        if folder is None:
            continue
        try:
            files = list_files(folder, exts)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        seed = None if args.no_shuffle else args.seed
        shards = write_shards(files, folder, args.out, prefix, args.per_shard, seed)
        print(f"{prefix}: {len(files)} files -> {len(shards)} shard(s) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
