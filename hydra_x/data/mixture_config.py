"""What the unified model trains on: the sources, the task mixture, sizes, examples per step and workers.

One :class:`UnifiedDataConfig` describes a run's whole data stream (see :mod:`hydra_x.data.mixture`); it is saved
with each checkpoint. ``task_ratios`` is normally left None and set from the training stage's recipe (the
paper's stage 1 is image_caption 1 : image_gen 3); caption dropout for classifier-free guidance is the trainer's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hydra_x.config import config_from_dict, config_to_dict
from hydra_x.data.examples import TASKS, task_image_size
from hydra_x.data.shapes import SPLITS
from hydra_x.data.shapes_text import check_edit_ops

SOURCE_TASKS: dict[str, tuple[str, ...]] = {
    "shapes": TASKS,  # the embedded default: every task, unlimited, nothing to download
    "conversations": ("text", "image_sft", "video_sft"),  # JSONL / JSON, LLaVA or OpenAI style
    "caption_shards": ("image_caption", "image_gen"),  # WebDataset shards of image + caption
    "video_caption_shards": ("video_caption", "video_gen"),  # WebDataset shards of video + caption
    "edits": ("edit",),  # JSONL / JSON of (source image, instruction, target image) records
    "edit_shards": ("edit",),  # WebDataset shards of source + instruction + target
}
MEDIA_ROOT_KINDS = ("conversations", "edits")  # the file-backed sources whose records name media paths
SOURCE_KINDS = tuple(SOURCE_TASKS)
MP_CONTEXTS = ("forkserver", "spawn", "fork")


@dataclass(frozen=True)
class UnifiedSource:
    kind: str  # one of SOURCE_KINDS
    # conversations, edits: a .jsonl (or .json array) file; shards: a folder of .tar files, a glob or a brace pattern
    path: str | None = None
    # Relative share among the sources that provide a task: an example of task t comes from source i with
    # probability weight_i / (sum of the weights of t's sources).
    weight: float = 1.0
    tasks: tuple[str, ...] | None = None  # only these of its tasks (None: all it provides)
    media_root: str | None = None  # conversations, edits: where relative media paths start (default: the file's folder)
    split: str = "train"  # shapes: "train" or "heldout"
    # shapes: the edit kinds its edits are drawn from (None: all of recolour, remove, add, move, resize)
    edit_ops: tuple[str, ...] | None = None
    # shapes: each question's answer drawn first, uniformly among its kind's answers in this world, then scenes
    # until one has it (hydra_x.data.shapes_text.balanced_question); off: questions uniform within their kind, so
    # that "zero" and "one" are four in five count answers and "no" most answers to "is there ...?".
    balanced_answers: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown unified data source kind {self.kind!r}; use one of {SOURCE_KINDS}")
        if (self.kind == "shapes") != (self.path is None):
            need = "takes no path (it is generated)" if self.kind == "shapes" else "needs a path"
            raise ValueError(f"the {self.kind} source {need}, got path={self.path!r}")
        if not (isinstance(self.weight, (int, float)) and self.weight >= 0 and math.isfinite(self.weight)):
            raise ValueError(f"source weights must be finite and >= 0, got {self.weight!r} for {self.name}")
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(self.tasks))
            wrong = [t for t in self.tasks if t not in SOURCE_TASKS[self.kind]]
            if wrong or not self.tasks:
                raise ValueError(
                    f"source {self.name}: tasks {list(self.tasks)} must be a non-empty subset of what a "
                    f"{self.kind} source provides, {SOURCE_TASKS[self.kind]}"
                )
        if self.media_root is not None and self.kind not in MEDIA_ROOT_KINDS:
            raise ValueError(f"media_root is for {' and '.join(MEDIA_ROOT_KINDS)} sources, not {self.kind}")
        if self.edit_ops is not None:
            if self.kind != "shapes":
                raise ValueError(f"edit_ops is for shapes sources, not {self.kind}")
            object.__setattr__(self, "edit_ops", tuple(self.edit_ops))
            check_edit_ops(self.edit_ops)
        if self.balanced_answers and self.kind != "shapes":
            raise ValueError(f"balanced_answers is for shapes sources, not {self.kind}")
        if self.split not in SPLITS or (self.split != "train" and self.kind != "shapes"):
            raise ValueError(f"split {self.split!r}: only a shapes source takes a split, one of {SPLITS}")

    @property
    def name(self) -> str:
        if self.kind == "shapes":
            return "shapes" if self.split == "train" else f"shapes:{self.split}"
        return f"{self.kind}:{self.path}"

    @property
    def provides(self) -> tuple[str, ...]:
        """The tasks this source may give, before its data is read (a conversations file may hold fewer)."""
        return self.tasks if self.tasks is not None else SOURCE_TASKS[self.kind]


@dataclass
class UnifiedDataConfig:
    sources: tuple[UnifiedSource, ...] = (UnifiedSource("shapes"),)
    task_ratios: dict[str, float] | None = None  # task -> weight; None: the training stage's recipe sets it
    image_size: int = 256  # images and clip frames are image_size x image_size (cover, centre crop)
    # The side of the images of the tasks that only read them (image captioning and questions: READ_IMAGE_TASKS);
    # None: image_size. Clips keep image_size. The paper trains understanding at higher resolutions than generation:
    # more visual tokens to count and place objects by, while generation keeps its cheaper size. Set the model's
    # own (UnifiedConfig.understanding_image_size) to the same, so that it is asked at the size it learnt.
    understanding_image_size: int | None = None
    clip_frames: int = 17  # 1 + 4k frames per clip
    frame_stride: int = 1  # every k-th decoded frame of a video
    examples_per_step: int = 8  # per rank
    num_workers: int = 2  # DataLoader worker processes per rank (0: build steps in the main process)
    seed: int = 0
    # Independent shard streams per rank; step s reads stream s mod shard_streams, so shard sources give the
    # same examples for any num_workers that divides it (0, 1, 2, 4 with the default).
    shard_streams: int = 4
    mp_context: str = "forkserver"  # how DataLoader workers start (see hydra_x.data.loader)
    prefetch_factor: int = 2  # steps each worker builds ahead

    def __post_init__(self) -> None:
        self.sources = tuple(s if isinstance(s, UnifiedSource) else UnifiedSource(**s) for s in self.sources)
        if not self.sources:
            raise ValueError("UnifiedDataConfig.sources is empty: give at least one source (e.g. shapes)")
        for name in ("image_size", "clip_frames", "frame_stride", "examples_per_step", "shard_streams"):
            _positive_int(name, getattr(self, name))
        _positive_int("prefetch_factor", self.prefetch_factor)
        if self.image_size % 16 or self.image_size < 16:
            raise ValueError(f"image_size must be a multiple of 16 (the patch size), got {self.image_size}")
        size = self.understanding_image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 16 or size % 16):
            raise ValueError(
                f"understanding_image_size must be None or a multiple of 16 (the patch size), got {size!r}"
            )
        if (self.clip_frames - 1) % 4:
            raise ValueError(f"clip_frames must be 1 + 4k (1, 5, 9, 13, 17, ...), got {self.clip_frames}")
        if not isinstance(self.num_workers, int) or isinstance(self.num_workers, bool) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.mp_context not in MP_CONTEXTS:
            raise ValueError(f"mp_context must be one of {MP_CONTEXTS}, got {self.mp_context!r}")
        if self.task_ratios is not None:
            self.task_ratios = dict(self.task_ratios)
            check_ratios(self.task_ratios)
            for task in self.active_tasks:
                if not any(task in s.provides and s.weight > 0 for s in self.sources):
                    raise ValueError(no_source_message(task, self.task_ratios[task], self.sources))

    def task_size(self, task: str) -> int:
        """The side of ``task``'s pictures (understanding_image_size for the tasks that only read them)."""
        return task_image_size(task, self.image_size, self.understanding_image_size)

    @property
    def active_tasks(self) -> tuple[str, ...]:
        """Tasks with a positive ratio, in TASKS order."""
        ratios = self.task_ratios or {}
        return tuple(t for t in TASKS if ratios.get(t, 0) > 0)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnifiedDataConfig:
        return config_from_dict(cls, data, where="data")


def check_ratios(ratios: dict[str, float]) -> None:
    for task, weight in ratios.items():
        if task not in TASKS:
            raise ValueError(f"task_ratios: unknown task {task!r}; tasks are {TASKS}")
        if not (isinstance(weight, (int, float)) and weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"task_ratios[{task!r}] must be finite and >= 0, got {weight!r}")
    if not any(w > 0 for w in ratios.values()):
        raise ValueError(f"task_ratios gives no task a positive weight: {ratios}")


def no_source_message(task: str, ratio: float, sources, provided: list[tuple[str, ...]] | None = None) -> str:
    """The error for a task in the mixture that none of the sources gives (``provided``: what each one holds)."""
    provided = provided if provided is not None else [s.provides for s in sources]
    listed = "; ".join(
        f"{s.name} (weight {s.weight:g}): {', '.join(p) or 'nothing'}" for s, p in zip(sources, provided)
    )
    return f"task {task!r} has ratio {ratio:g} but no source provides it with a positive weight; sources: {listed}"


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
