"""The unified model's data stream: per step, ``examples_per_step`` examples of mixed tasks for one rank.

Example i of rank r in step s is global example g = r * E + i (E = examples_per_step). Its task is drawn by
``task_ratios`` from a hash of (seed, s, g), and its source, among those that provide the task, by their weights
from another hash. Map-style sources (shapes, conversations, edits) then give draw ``s * E * world_size + g`` (attempt
0, then 1, ... if it fails), so their examples are a pure function of (config, step, global index, global batch)
and need no state: any resume, any worker count, and any split of one global batch across ranks give the same
examples. Shard sources read a stream (:mod:`hydra_x.data.caption_shards`): step s of a rank reads its stream
s mod ``shard_streams``, whose position is in :meth:`UnifiedDataLoader.state_dict`.

Workers: whole steps are built in DataLoader workers, worker w of W taking steps start + w, start + w + W, ...
(as the tokenizer's loader does); with ``num_workers`` dividing ``shard_streams`` each stream lives in one worker,
so the output is the same with 0 (in-process), 1, 2, ... workers.

Bad data: a failed example is replaced by its source's next candidate, so a step keeps its size; each bad file
(or record, or shard) is reported once in the run, in the first :class:`StepExamples` after it was met, logged
and counted by category; records a conversations file can never use are found when it is scanned and reported
with the first step. A source that cannot be used at all is a DataSourceError.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from hydra_x.data.buckets import hash_uniform
from hydra_x.data.caption_shards import CaptionShardSource, CaptionStream
from hydra_x.data.config import DataSourceError
from hydra_x.data.conversations import ConversationSource, parse_record, scan_conversations
from hydra_x.data.edit_pairs import EditShardSource, parse_edit_record
from hydra_x.data.examples import Example, Visual, checked_elsewhere
from hydra_x.data.failures import first_seen, skip_entry
from hydra_x.data.media import MediaError
from hydra_x.data.mixture_config import UnifiedDataConfig, UnifiedSource, check_ratios, no_source_message
from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.data.workers import one_thread, step_stream

__all__ = ["StepExamples", "UnifiedDataConfig", "UnifiedDataLoader", "UnifiedSource", "step_plan", "step_tasks"]

log = logging.getLogger("hydra_x.data")

STATE_VERSION = 1
MAX_ATTEMPTS = 100  # candidates tried for one example before its source is declared unusable
_TAG_TASK, _TAG_SOURCE = 61, 62


@dataclass
class StepExamples:
    step: int  # the global step (the trainer's micro-step)
    examples: list[Example]
    # (file, record or shard, "category: problem") met while building this step and not reported before this run
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # What the loader's ``prepare`` made of this step where it was built (the trainer's packed rows), or None.
    prepared: Any = None
    # A step that came from a worker: its pictures' stacks, one per shape, and each picture's (stack, row)
    _pixel_stacks: list[torch.Tensor] | None = field(default=None, init=False, repr=False, compare=False)
    _pixel_rows: list[tuple[int, int]] | None = field(default=None, init=False, repr=False, compare=False)

    def pin_memory(self) -> StepExamples:
        """Page-locked pixels (DataLoader's pin thread calls this), so the model copies them to the GPU without the
        main process first reading every page that a worker wrote. A step that came from a worker pins its one
        stack per picture shape, and its pictures become rows of the pinned stacks."""
        if self._pixel_stacks is not None:
            self._pixel_stacks = [stack.pin_memory() for stack in self._pixel_stacks]
            self._set_pixels(self._pixel_stacks, self._pixel_rows)
        else:
            for ex in self.examples:
                ex.visuals[:] = [replace(v, pixels=v.pixels.pin_memory()) for v in ex.visuals]
        if hasattr(self.prepared, "pin_memory"):
            self.prepared = self.prepared.pin_memory()
        return self

    # A step crosses from its worker to the trainer pickled. Pickled as built, each picture is a tensor of its own,
    # which the receiving process maps from shared memory one by one: 0.23 s a step of 512 shapes-world examples
    # and 0.96 s of 2048 on the trainer's side (benchmarks/unified_step_transfer.py), against GPU steps of about
    # 0.5 s. So the pictures travel as one stack per shape, and arrive as rows of those stacks.

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_pixel_stacks", "_pixel_rows")}
        stack_of: dict[tuple[int, ...], int] = {}  # picture shape -> its stack
        pictures: list[list[torch.Tensor]] = []  # each stack's pictures
        rows = []  # (stack, row) of every picture, example by example
        for ex in self.examples:
            for v in ex.visuals:
                k = stack_of.setdefault(tuple(v.pixels.shape), len(pictures))
                if k == len(pictures):
                    pictures.append([])
                rows.append((k, len(pictures[k])))
                pictures[k].append(v.pixels)
        state["examples"] = [(ex.task, ex.messages, [v.role for v in ex.visuals], ex.key) for ex in self.examples]
        state["_pixel_stacks"] = [torch.stack(same) for same in pictures]
        state["_pixel_rows"] = rows
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        parts = state["examples"]
        self.__dict__.update(state)
        self.examples = [checked_elsewhere(task, messages, [], key) for task, messages, _, key in parts]
        self._set_pixels(self._pixel_stacks, self._pixel_rows, [roles for _, _, roles, _ in parts])

    def _set_pixels(
        self, stacks: list[torch.Tensor], rows: list[tuple[int, int]], roles: list[list[str]] | None = None
    ) -> None:
        """Every visual's pixels as its row of ``stacks``, ``rows`` giving (stack, row) example by example;
        ``roles``: the visuals' roles example by example where the examples have no visuals yet."""
        pictures = [stack.unbind() for stack in stacks]
        where = iter(rows)
        for i, ex in enumerate(self.examples):
            kept = [v.role for v in ex.visuals] if roles is None else roles[i]
            ex.visuals[:] = [Visual(pictures[k][r], role) for role, (k, r) in zip(kept, where)]


# ---------------------------------------------------------------------------- the plan


def _choose(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn by ``weights`` (all > 0) for each uniform in ``u``."""
    cum = np.cumsum(weights, dtype=np.float64)
    cum /= cum[-1]
    cum[-1] = 1.0  # hashed uniforms are < 1
    return np.searchsorted(cum, u, side="right")


def step_tasks(config: UnifiedDataConfig, step: int, rank: int = 0) -> list[str]:
    """The task of each of rank ``rank``'s examples in ``step`` (needs no data)."""
    if config.task_ratios is None:
        raise ValueError("task_ratios is not set (a training stage's recipe sets it)")
    tasks = config.active_tasks
    g = rank * config.examples_per_step + np.arange(config.examples_per_step)
    u = hash_uniform(config.seed, _TAG_TASK, step, g)
    return [tasks[i] for i in _choose(np.array([config.task_ratios[t] for t in tasks]), u)]


Plan = list[tuple[str, int]]  # (task, source index) per example


def step_plan(config: UnifiedDataConfig, providers: dict[str, list[int]], step: int, rank: int) -> Plan:
    """(task, source index) of each of rank ``rank``'s examples in ``step``."""
    tasks = step_tasks(config, step, rank)
    g = rank * config.examples_per_step + np.arange(config.examples_per_step)
    u = hash_uniform(config.seed, _TAG_SOURCE, step, g)
    out = []
    for task, ui in zip(tasks, u):
        sids = providers[task]
        k = _choose(np.array([config.sources[s].weight for s in sids]), np.array([ui]))[0]
        out.append((task, sids[int(k)]))
    return out


# ---------------------------------------------------------------------------- building steps (main process or a worker)


@dataclass
class _Spec:
    """Everything a worker needs (pickled to it): the config, the layout, the sources and the stream positions."""

    config: UnifiedDataConfig
    rank: int
    world_size: int
    sources: list  # ShapesTasks | ConversationSource | CaptionShardSource (EditShardSource among them)
    providers: dict[str, list[int]]
    stream_states: dict[str, dict[str, dict]] = field(default_factory=dict)  # stream -> source -> position
    fresh_states: dict[str, dict] = field(default_factory=dict)  # source -> where streams without a state start
    prepare: Callable[[StepExamples], Any] | None = None  # run on each step where it is built


def _stream(spec: _Spec, streams: dict, stream: int, sid: int) -> CaptionStream:
    """This rank's stream ``stream`` of shard source ``sid``, opened at its saved position the first time."""
    if (stream, sid) not in streams:
        saved = spec.stream_states.get(str(stream), {}).get(str(sid), spec.fresh_states.get(str(sid)))
        n = spec.config.shard_streams
        streams[stream, sid] = spec.sources[sid].open_stream(spec.rank * n + stream, spec.world_size * n, saved)
    return streams[stream, sid]


def _example(spec: _Spec, streams: dict, stream: int, step: int, i: int, task: str, sid: int, skipped: list):
    """Example i of this rank in ``step``: the source's next candidate until one is usable."""
    src = spec.sources[sid]
    e = spec.config.examples_per_step
    counter = step * e * spec.world_size + spec.rank * e + i
    last: MediaError | None = None
    for attempt in range(MAX_ATTEMPTS):
        try:
            if isinstance(src, CaptionShardSource):
                reader = _stream(spec, streams, stream, sid)
                try:
                    return reader.next_example(task)
                finally:
                    skipped.extend(reader.pop_skipped())
            return src.draw(task, counter, attempt)
        except MediaError as err:
            last = err
            if not getattr(err, "seen", False):  # reported when it first failed
                skipped.append(skip_entry(err))
    raise DataSourceError(
        f"data source {src.name}: no usable {task} example in {MAX_ATTEMPTS} tries (last: {last}); "
        "is the whole source unreadable?"
    )


def _build_step(spec: _Spec, streams: dict[tuple[int, int], CaptionStream], step: int) -> tuple[StepExamples, dict]:
    """The step's examples and the position of its shard stream after it."""
    stream = step % spec.config.shard_streams
    skipped: list[tuple[str, str]] = []
    examples = [
        _example(spec, streams, stream, step, i, task, sid, skipped)
        for i, (task, sid) in enumerate(step_plan(spec.config, spec.providers, step, spec.rank))
    ]
    state = dict(spec.stream_states.get(str(stream), {}))
    state.update({str(sid): s.state() for (k, sid), s in streams.items() if k == stream})
    return StepExamples(step, examples, skipped), state


@dataclass
class _Unusable:
    """In place of a step: a source cannot be used (the DataSourceError's message, raised in the main process)."""

    message: str


def _produce(spec: _Spec, start: int, worker: int, workers: int) -> Iterator[tuple[StepExamples | _Unusable, dict]]:
    streams: dict[tuple[int, int], CaptionStream] = {}
    step = start + worker
    try:
        while True:
            with one_thread():  # not around the yield: the caller's code runs there
                examples, stream_state = _build_step(spec, streams, step)
                if spec.prepare is not None:
                    examples.prepared = spec.prepare(examples)
            yield examples, stream_state
            step += workers
    except DataSourceError as err:
        yield _Unusable(str(err)), {}


def build_source(sid: int, sc: UnifiedSource, config: UnifiedDataConfig):
    """The source object of ``config.sources[sid]``; DataSourceError when it cannot be used at all."""
    size, frames, stride = config.image_size, config.clip_frames, config.frame_stride
    read_size = config.understanding_image_size
    if sc.kind == "shapes":
        return ShapesTasks(config.seed, sc.split, size, frames, sc.edit_ops, read_size, sc.balanced_answers)
    if sc.kind in ("conversations", "edits"):
        parse = parse_edit_record if sc.kind == "edits" else parse_record
        index = scan_conversations(sc.path, sc.media_root, parse, sc.kind)
        # a conversation's images are read (image_sft; its clips, video_sft, keep image_size); an edit's are at its
        # target's size
        read = None if sc.kind == "edits" else read_size
        return ConversationSource(index, sid, config.seed, size, frames, stride, read)
    if sc.kind == "edit_shards":
        return EditShardSource(sc.path, sid, config.seed, size, sc.name)
    media = "image" if sc.kind == "caption_shards" else "video"
    return CaptionShardSource(sc.path, media, sid, config.seed, size, frames, stride, sc.name, read_size)


def find_providers(config: UnifiedDataConfig, sources: list) -> dict[str, list[int]]:
    """task -> the sources that give it (configured for it, weight > 0, data for it); DataSourceError if none."""
    given = [tuple(t for t in sc.provides if t in src.tasks) for sc, src in zip(config.sources, sources)]
    providers = {}
    for task in config.active_tasks:
        providers[task] = [i for i, sc in enumerate(config.sources) if sc.weight > 0 and task in given[i]]
        if not providers[task]:
            raise DataSourceError(no_source_message(task, config.task_ratios[task], config.sources, given))
    return providers


# ---------------------------------------------------------------------------- the loader


class UnifiedDataLoader:
    """An endless, exactly reproducible stream of :class:`StepExamples` for one rank.

    Iterating yields step ``start_step``, then the next ones (a later ``iter()`` continues after the last step
    handed out). ``state_dict()`` is the position after that step; pass it back as ``state`` with ``start_step``
    equal to its ``"step"`` to continue exactly. Only shard sources need it. ``prepare`` (picklable) runs on each
    step where it is built, in a worker where there are workers, and its result travels as ``prepared``: the
    trainer packs its rows there instead of in its own process.
    """

    def __init__(
        self,
        config: UnifiedDataConfig,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        state: dict | None = None,
        pin_memory: bool = False,
        prepare: Callable[[StepExamples], Any] | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        if config.task_ratios is None:
            raise ValueError("UnifiedDataConfig.task_ratios is not set: give task -> weight (stage recipes set it)")
        check_ratios(config.task_ratios)
        self.config, self.rank, self.world_size = config, rank, world_size
        self.pin_memory = pin_memory  # for a CUDA run: pixels arrive page-locked
        sources = [build_source(i, sc, config) for i, sc in enumerate(config.sources)]
        self.has_shards = any(isinstance(s, CaptionShardSource) for s in sources)
        if self.has_shards and config.num_workers and config.shard_streams % config.num_workers:
            raise ValueError(
                f"num_workers ({config.num_workers}) must divide shard_streams ({config.shard_streams}), so that "
                "each shard stream is read by one worker"
            )
        self._spec = _Spec(config, rank, world_size, sources, find_providers(config, sources), prepare=prepare)
        self._step = start_step
        self.skip_counts: Counter = Counter()  # distinct bad files by category, this run and those resumed
        self._reported: set[str] = set()
        if state is not None:
            self._load_state(state, start_step)
        elif start_step > 0 and self.has_shards:
            warnings.warn(
                f"resuming at step {start_step} without a saved data state: shard sources start again from their "
                "first epoch (shapes and conversations continue exactly)",
                stacklevel=2,
            )
        # Records the scans left out: counted on every rank, logged and reported (with the first step) by rank 0.
        scan = [entry for src in sources if isinstance(src, ConversationSource) for entry in src.index.skipped]
        scan = self._first_seen(scan, log_it=rank == 0)
        self._pending = scan if rank == 0 else []

    @property
    def sources(self) -> list:
        return self._spec.sources

    @property
    def step(self) -> int:
        """The global step of the next StepExamples."""
        return self._step

    def _first_seen(self, skipped: list[tuple[str, str]], log_it: bool = True) -> list[tuple[str, str]]:
        """The entries not reported before, now counted (and logged)."""
        return first_seen(skipped, self._reported, self.skip_counts, log, log_it)

    # -- position

    def _fingerprint(self) -> list:
        sizes = [len(src) if hasattr(src, "__len__") else None for src in self.sources]  # records, or shard files
        return [[sc.kind, sc.path, sc.weight, n] for sc, n in zip(self.config.sources, sizes)]

    def state_dict(self) -> dict:
        """JSON-serialisable position after the last step handed out (per rank)."""
        return {
            "version": STATE_VERSION,
            "step": self._step,
            "rank": self.rank,
            "world_size": self.world_size,
            "shard_streams": self.config.shard_streams,
            "seed": self.config.seed,
            "sources": self._fingerprint(),
            "streams": {k: dict(v) for k, v in self._spec.stream_states.items()},
            "fresh": dict(self._spec.fresh_states),
            "skip_counts": dict(self.skip_counts),
            "skipped_files": sorted(self._reported),
        }

    def _load_state(self, state: dict, start_step: int) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"data state version {state.get('version')!r} is not {STATE_VERSION}")
        if int(state["step"]) != start_step:
            raise ValueError(f"the data state was saved at step {state['step']}, not at start_step {start_step}")
        if state.get("seed") != self.config.seed or state.get("sources") != self._fingerprint():
            warnings.warn("the data seed or sources differ from the saved state's: the stream will not continue "
                          "exactly", stacklevel=3)  # fmt: skip
        self.skip_counts.update(state.get("skip_counts", {}))
        self._reported.update(state.get("skipped_files", ()))
        layout = (state.get("rank"), state.get("world_size"), state.get("shard_streams"))
        streams = state.get("streams", {})
        if layout == (self.rank, self.world_size, self.config.shard_streams):
            self._spec.stream_states = {k: dict(v) for k, v in streams.items()}
            self._spec.fresh_states = dict(state.get("fresh", {}))
            return
        epochs: dict[str, int] = {}
        for per_source in streams.values():
            for sid, pos in per_source.items():
                epochs[sid] = min(epochs.get(sid, pos["epoch"]), pos["epoch"])
        self._spec.fresh_states = {sid: {"epoch": e, "cursor": 0, "next": 0} for sid, e in epochs.items()}
        if epochs:
            warnings.warn(
                f"data state saved as rank {layout[0]} of {layout[1]} with {layout[2]} shard streams, resumed as "
                f"rank {self.rank} of {self.world_size} with {self.config.shard_streams}: shard sources restart at "
                f"the beginning of epoch(s) {epochs} (shapes and conversations continue exactly)",
                stacklevel=3,
            )

    # -- iteration

    def __iter__(self) -> Iterator[StepExamples]:
        """The steps from the next one on. The data workers start here, not at the first ``next()``: a trainer that
        calls ``iter()`` before its setup (the model's load and move, compilation) finds its first step ready."""
        spec, start, cfg = self._spec, self._step, self.config
        stream = step_stream(
            _produce,
            spec,
            start,
            num_workers=cfg.num_workers,
            mp_context=cfg.mp_context,
            preload="hydra_x.data.mixture",
            prefetch_factor=cfg.prefetch_factor,
            pin_memory=self.pin_memory,
        )
        return self._steps(stream)

    def _steps(self, stream: Iterator) -> Iterator[StepExamples]:
        spec, cfg = self._spec, self.config
        for out, stream_state in stream:
            if isinstance(out, _Unusable):
                raise DataSourceError(out.message)
            if self.pin_memory and cfg.num_workers == 0:
                out.pin_memory()
            if out.step != self._step:
                raise RuntimeError(f"data steps out of order: got step {out.step}, expected {self._step}")
            if self.has_shards:
                spec.stream_states[str(out.step % cfg.shard_streams)] = stream_state
            self._step = out.step + 1
            out.skipped = self._pending + self._first_seen(out.skipped)
            self._pending = []
            yield out
