"""The tokenizer's data stream: sources mixed by weight, one kind of batch per step, exact resume.

Each global step takes its whole batch from one source, chosen by hashing (seed, step) against the source
weights, the same on every rank, so image-only and video-only steps alternate as the paper trains and all
ranks run the same model parts. Inside a map-style source (folders, the embedded set) the step also picks a
bucket (by hashing, weighted by the bucket's number of files) and takes the next *global* batch of that
bucket's stream: global batch j holds stream positions j*G .. j*G+G-1 (G = per-rank batch * world size),
rank r the r-th slice. A batch is therefore a pure function of (config, step, rank, world size): resuming
at step k needs nothing but k, and a run resumed on another world size with the same global batch
continues the same sample stream. A sample that fails is replaced by seeded candidates (see
FolderSource), so batches keep their size.

Bad files are counted once: each source remembers, per process, the samples that failed (see
:mod:`hydra_x.data.failures`: a remembered failure is the outcome decoding would give, so no batch depends on
it) and reports a file only the first time; the main process then drops files it has reported before (other
workers may meet the same file), across resumes too: the state lists them. ``Batch.skipped`` and
``skip_counts`` are therefore distinct files (or shard samples, or shards) per rank, not skip events. A
source that cannot be used at all raises DataSourceError, from a worker as from the main process.

Shard sources are streams: each (rank, DataLoader worker) reads its own shards (see shards.py). Steps go to
workers round robin (step s to worker slot s mod W), and a slot's shard streams only advance on its steps,
so the stream is exact for a given world size and worker count, and :meth:`TokenizerDataLoader.state_dict`
holds each slot's position (after the last batch handed out, not where the workers have read ahead to).

Workers: a torch DataLoader (batch_size=None) whose workers build whole batches; the main process only
checks the order, logs skipped samples and tracks the position. Workers start by forkserver by default:
plain fork copies a training process that may hold CUDA state and threads (FFmpeg's, OpenMP's) whose locks
can deadlock a child, while spawn re-imports torch in every worker (seconds each); a fork server imports
this module once, before any such state exists, and forks workers from that clean process. As with spawn,
workers import the main script, which therefore needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from hydra_x.data.buckets import Bucket, make_buckets
from hydra_x.data.config import DataConfig, DataSourceError, SourceConfig
from hydra_x.data.embedded import EmbeddedSource
from hydra_x.data.failures import first_seen, skip_entry
from hydra_x.data.folder_source import open_folder
from hydra_x.data.media import MediaError
from hydra_x.data.plan import StepPlan, step_kinds, step_sources  # noqa: F401 - step_kinds, step_sources: re-exported
from hydra_x.data.shards import ShardStream, epoch_of, expand_shards
from hydra_x.data.workers import one_thread, step_stream

log = logging.getLogger("hydra_x.data")

STATE_VERSION = 1
MAX_ATTEMPTS = 100  # candidates tried for one batch slot before a map-style source is declared unusable


@dataclass
class Batch:
    pixels: torch.Tensor  # (B, 3, H, W) images or (B, 3, F, H, W) clips, float32 in [-1, 1]
    kind: str  # "image" | "video"
    keys: list[str]  # sample ids: file paths, "shard.tar:key", or embedded ids naming the photograph
    # (file or key, "category: problem") of the files skipped while building this batch that this rank had
    # not reported before: each bad file appears once in a run
    skipped: list[tuple[str, str]]
    step: int = -1  # the global step this batch belongs to
    source: str = ""  # the source it came from (SourceConfig.name)

    def pin_memory(self) -> Batch:
        """Page-locked pixels, so the copy to the GPU runs asynchronously (DataLoader's pin_memory calls this)."""
        self.pixels = self.pixels.pin_memory()
        return self


# ---------------------------------------------------------------------------- building batches


@dataclass
class _Spec:
    """Everything a worker needs (pickled to it): config, layout, map-style sources, shard lists."""

    config: DataConfig
    rank: int
    world_size: int
    buckets: list[tuple[Bucket, ...]]  # each source's, at its own size
    sources: list  # FolderSource / EmbeddedSource, or the shard file list of a shard source
    slot_states: dict[str, dict[str, dict]] = field(default_factory=dict)
    start_epochs: dict[str, int] = field(default_factory=dict)  # shard sources restarted on a new layout

    def plan(self) -> StepPlan:
        weights = [None if isinstance(s, list) else s.group_weights for s in self.sources]
        return StepPlan(self.config, weights)


def _map_batch(spec: _Spec, src, group: int, j: int, batch: int) -> tuple[list[str], list[torch.Tensor], list]:
    """Rank ``spec.rank``'s slice of global batch j of a map-style source's bucket group."""
    first = j * batch * spec.world_size + spec.rank * batch
    keys, xs, skipped = [], [], []
    for p in range(first, first + batch):
        for attempt in range(MAX_ATTEMPTS):
            try:
                key, x = src.sample(group, p, attempt)
                break
            except MediaError as err:
                last = err
                if not getattr(err, "seen", False):  # reported when it first failed
                    skipped.append(skip_entry(err))
        else:
            raise DataSourceError(
                f"data source {src.name}: no usable sample in {MAX_ATTEMPTS} tries (last: {last}); "
                "is the whole source unreadable?"
            )
        keys.append(key)
        xs.append(x)
    return keys, xs, skipped


@dataclass
class _Unusable:
    """In place of a batch: the source cannot be used (a DataSourceError's message, which a worker cannot
    raise in the main process without DataLoader wrapping it in a traceback)."""

    message: str


def _produce(spec: _Spec, start: int, worker: int, workers: int) -> Iterator[tuple[int, Batch | _Unusable, str, dict]]:
    """The batches of worker ``worker`` of ``workers``: steps start + worker, start + worker + workers, ..."""
    try:
        yield from _batches(spec, start, worker, workers)
    except DataSourceError as err:
        yield -1, _Unusable(str(err)), "", {}


def _batches(spec: _Spec, start: int, worker: int, workers: int) -> Iterator[tuple[int, Batch, str, dict]]:
    cfg = spec.config
    slot = str((start + worker) % workers)
    consumer, consumers = spec.rank * workers + int(slot), spec.world_size * workers
    saved = spec.slot_states.get(slot, {})
    streams: dict[int, ShardStream] = {}
    for step, s, g, j in spec.plan().walk(start):
        if (step - start) % workers != worker:
            continue
        sc: SourceConfig = cfg.sources[s]
        with one_thread():
            if sc.is_shards:
                if s not in streams:
                    streams[s] = ShardStream(
                        sc.media, spec.sources[s], s, cfg, spec.buckets[s], consumer, consumers,
                        state=saved.get(str(s)), start_epoch=spec.start_epochs.get(str(s), 0), name=sc.name,
                    )  # fmt: skip
                keys, xs, _, skipped = streams[s].next_batch()
            else:
                keys, xs, skipped = _map_batch(spec, spec.sources[s], g, j, cfg.batch_size(sc.media))
            pixels = torch.stack(xs)
        state = {**saved, **{str(k): v.state() for k, v in streams.items()}}
        yield step, Batch(pixels, sc.media, keys, skipped, step, sc.name), slot, state


# ---------------------------------------------------------------------------- the loader


def check_sources(config: DataConfig, only: SourceConfig | None = None) -> None:
    """Fail fast, before a model is built: every folder source (or ``only`` that one) exists and every shard pattern
    matches a file (DataSourceError otherwise). Whether the files are usable is only known once the loader scans
    them."""
    for sc in config.sources if only is None else (only,):
        if sc.is_shards and not expand_shards(sc.path):
            raise DataSourceError(f"data source {sc.name}: no shard file (.tar) matches")
        if sc.kind.endswith("_folder") and not os.path.isdir(sc.path):
            problem = "not a folder" if os.path.exists(sc.path) else "no such folder"
            raise DataSourceError(f"data source {sc.name}: {problem}")


class TokenizerDataLoader:
    """An endless, exactly reproducible stream of image-only and video-only batches for one rank.

    Iterating yields the batch of global step ``start_step``, then the next ones (a later ``iter()``
    continues where the last batch handed out left off). ``state_dict()`` is the position after that batch;
    pass it back as ``state`` with ``start_step`` equal to its ``"step"`` to continue exactly. Only shard
    sources need the state (map-style sources resume from the step alone); it is per rank.
    """

    def __init__(
        self,
        config: DataConfig,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        state: dict | None = None,
        pin_memory: bool = False,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        self.config, self.rank, self.world_size = config, rank, world_size
        self.pin_memory = pin_memory  # for a CUDA run: batches arrive page-locked
        self.buckets = [
            make_buckets(config.source_size(sc), config.size_multiple, config.aspect_buckets) for sc in config.sources
        ]  # per source
        self.skip_counts: Counter = Counter()  # distinct skipped files by category, this run and the ones resumed
        self.scan_skipped: list[tuple[str, str]] = []  # files the folder scans left out
        self._reported: set[str] = set()  # files (shard samples, shards) this rank counted and logged
        sources = [self._build_source(i, sc) for i, sc in enumerate(config.sources)]
        self._spec = _Spec(config, rank, world_size, self.buckets, sources)
        self._step = start_step
        self._workers = max(1, config.num_workers)
        self._slot_states: dict[str, dict[str, dict]] = {}
        if state is not None:
            self._load_state(state, start_step)
        elif start_step > 0 and any(sc.is_shards for sc in config.sources):
            warnings.warn(
                f"resuming at step {start_step} without a saved data state: shard sources start again from their "
                "first epoch (map-style sources continue exactly)",
                stacklevel=2,
            )
        self.scan_skipped = self._first_seen(self.scan_skipped, log_it=rank == 0)
        self._report_scan = rank == 0 and bool(self.scan_skipped)

    def _build_source(self, sid: int, sc: SourceConfig):
        if sc.kind.startswith("embedded"):
            return EmbeddedSource(sc.media, sid, self.config, self.buckets[sid])
        check_sources(self.config, only=sc)
        if sc.is_shards:
            return expand_shards(sc.path)
        source = open_folder(sc, sid, self.config, self.buckets[sid])
        self.scan_skipped.extend(source.index.skipped)
        return source

    def _first_seen(self, skipped: list[tuple[str, str]], log_it: bool = True) -> list[tuple[str, str]]:
        """The entries of files not reported before, now counted (and logged)."""
        return first_seen(skipped, self._reported, self.skip_counts, log, log_it)

    # -- position

    def _fingerprint(self) -> list:
        return [
            [sc.kind, sc.path, sc.weight, len(src) if not isinstance(src, EmbeddedSource) else None]
            + ([] if sc.image_size is None else [sc.image_size])  # as before for sources at the config's size
            for sc, src in zip(self.config.sources, self._spec.sources)
        ]

    def state_dict(self) -> dict:
        """JSON-serialisable position after the last batch handed out (per rank)."""
        return {
            "version": STATE_VERSION,
            "step": self._step,
            "rank": self.rank,
            "world_size": self.world_size,
            "workers": self._workers,
            "seed": self.config.seed,
            "sources": self._fingerprint(),
            "slots": {k: dict(v) for k, v in self._slot_states.items()},
            "skip_counts": dict(self.skip_counts),  # distinct files by category
            "skipped_files": sorted(self._reported),
        }

    def _load_state(self, state: dict, start_step: int) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"data state version {state.get('version')!r} is not {STATE_VERSION}")
        if int(state["step"]) != start_step:
            raise ValueError(f"the data state was saved at step {state['step']}, not at start_step {start_step}")
        if state.get("seed") != self.config.seed:
            warnings.warn(
                f"data state saved with seed {state.get('seed')}, config seed {self.config.seed}", stacklevel=3
            )
        if state.get("sources") != self._fingerprint():
            warnings.warn(
                "the data sources differ from the saved state's (files added or removed, weights changed?): "
                "the stream will not continue exactly",
                stacklevel=3,
            )
        self.skip_counts.update(state.get("skip_counts", {}))
        self._reported.update(state.get("skipped_files", ()))
        slots = state.get("slots", {})
        same = (state.get("world_size"), state.get("workers"), state.get("rank")) == (
            self.world_size,
            self._workers,
            self.rank,
        )
        if same:
            self._slot_states = {k: dict(v) for k, v in slots.items()}
        elif slots:
            epochs: dict[str, list[int]] = {}
            for per_source in slots.values():
                for sid, st in per_source.items():
                    epochs.setdefault(sid, []).append(epoch_of(st))
            self._spec.start_epochs = {sid: min(e) for sid, e in epochs.items()}
            warnings.warn(
                f"data state saved with world size {state.get('world_size')} and {state.get('workers')} worker "
                f"slot(s), resumed with {self.world_size} and {self._workers}: shard sources restart at the "
                f"beginning of epoch(s) {self._spec.start_epochs} (map-style sources continue exactly)",
                stacklevel=3,
            )

    # -- iteration

    def __iter__(self) -> Iterator[Batch]:
        """The batches from the next one on; the data workers start here, not at the first ``next()``."""
        self._spec.slot_states = {k: dict(v) for k, v in self._slot_states.items()}
        start = self._step
        cfg = self.config
        stream = step_stream(
            _produce,
            self._spec,
            start,
            num_workers=cfg.num_workers,
            mp_context=cfg.mp_context,
            preload="hydra_x.data.loader",
            prefetch_factor=cfg.prefetch_factor,
            pin_memory=self.pin_memory,
        )
        return self._batches(stream)

    def _batches(self, stream: Iterator) -> Iterator[Batch]:
        for step, batch, slot, slot_state in stream:
            if isinstance(batch, _Unusable):
                raise DataSourceError(batch.message)
            if self.pin_memory and self.config.num_workers == 0:
                batch.pin_memory()
            if step != self._step:
                raise RuntimeError(f"data batches out of order: got step {step}, expected {self._step}")
            if slot_state:
                self._slot_states[slot] = slot_state
            self._step = step + 1
            batch.skipped = self._first_seen(batch.skipped)
            if self._report_scan:
                batch.skipped = self.scan_skipped + batch.skipped
                self._report_scan = False
            yield batch

    @property
    def step(self) -> int:
        """The global step of the next batch."""
        return self._step
