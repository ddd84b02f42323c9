"""What the tokenizer trains on: the sources, their weights, sizes, clip sampling, batch sizes and workers.

One ``DataConfig`` describes the whole data stream of a run; for a given config the batch of every global
step is fixed (see :mod:`hydra_x.data.loader`), so the config is saved with each checkpoint.
:class:`DataSourceError` is the one error a source that cannot be used at all raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra_x.config import config_from_dict, config_to_dict
from hydra_x.errors import InputError

SOURCE_KINDS = ("embedded_images", "embedded_videos", "image_folder", "video_folder", "image_shards", "video_shards")
MP_CONTEXTS = ("forkserver", "spawn", "fork")


class DataSourceError(InputError):
    """A data source that cannot be used at all: a missing folder, no files, no usable sample. The message
    names the source and the reason on one line (a command line shows it as ``error: ...``, exit 2)."""


@dataclass(frozen=True)
class SourceConfig:
    kind: str  # one of SOURCE_KINDS
    # A folder; for shards: a folder of .tar files, a glob ("data/*.tar") or a brace pattern
    # ("data/train-{000000..000099}.tar"). Unused by the embedded sources.
    path: str | None = None
    weight: float = 1.0  # relative share of the steps whose batch comes from this source
    # This source's square side, or its buckets' pixel budget (None: the DataConfig's image_size), e.g. the
    # photographs at 256 beside renders that a model will generate at 128: each step's batch is one source's.
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown data source kind {self.kind!r}; use one of {SOURCE_KINDS}")
        if self.kind.startswith("embedded"):
            if self.path is not None:
                raise ValueError(f"the {self.kind} source is built at run time and takes no path (got {self.path!r})")
        elif not self.path:
            raise ValueError(f"the {self.kind} source needs a path")
        if not (self.weight >= 0 and self.weight < float("inf")):
            raise ValueError(f"source weights must be finite and >= 0, got {self.weight} for {self.kind}")
        size = self.image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"a source's image_size must be None or a positive integer, got {size!r} for {self.name}")

    @property
    def media(self) -> str:
        """'image' or 'video': the kind of batch this source makes."""
        return "image" if self.kind in ("embedded_images", "image_folder", "image_shards") else "video"

    @property
    def is_shards(self) -> bool:
        return self.kind.endswith("_shards")

    @property
    def name(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


@dataclass
class DataConfig:
    sources: tuple[SourceConfig, ...] = (SourceConfig("embedded_images"), SourceConfig("embedded_videos"))
    image_size: int = 256  # square side, or the pixel budget of a bucket (about image_size**2 pixels)
    aspect_buckets: bool = True  # non-square buckets (aspect 1:2 .. 2:1); False: every sample is square
    size_multiple: int = 16  # patch size: every H and W is a multiple
    clip_frames: int = 17  # 1 + T frames, T a multiple of `frames_multiple`
    frames_multiple: int = 4
    frame_stride: int = 1  # take every k-th decoded frame ...
    fps: float | None = None  # ... or resample to this frame rate by timestamps (overrides the stride)
    image_batch_size: int = 8  # per rank
    video_batch_size: int = 2  # per rank
    num_workers: int = 2  # DataLoader worker processes per rank (0: build batches in the main process)
    seed: int = 0
    random_crop: bool = True  # False: centre crops
    hflip: bool = True  # random horizontal flips
    # How DataLoader workers start; forkserver forks them from a clean server process that has imported the
    # data modules once (see loader.py for why not plain fork).
    mp_context: str = "forkserver"
    prefetch_factor: int = 2  # batches each worker builds ahead
    shard_interleave: int = 4  # shards each worker reads at once, drawing samples from them in a seeded order

    def __post_init__(self) -> None:
        self.sources = tuple(s if isinstance(s, SourceConfig) else SourceConfig(**s) for s in self.sources)
        if not self.sources:
            raise ValueError("DataConfig.sources is empty: give at least one data source")
        if sum(s.weight for s in self.sources) <= 0:
            raise ValueError("every data source has weight 0: at least one weight must be positive")
        for name in ("image_size", "size_multiple", "clip_frames", "frames_multiple", "frame_stride"):
            _positive_int(name, getattr(self, name))
        for name in ("image_batch_size", "video_batch_size", "prefetch_factor", "shard_interleave"):
            _positive_int(name, getattr(self, name))
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        if self.image_size % self.size_multiple:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of size_multiple ({self.size_multiple})"
            )
        for sc in self.sources:
            if sc.image_size is not None and sc.image_size % self.size_multiple:
                raise ValueError(
                    f"data source {sc.name}: image_size ({sc.image_size}) must be a multiple of size_multiple "
                    f"({self.size_multiple})"
                )
        if (self.clip_frames - 1) % self.frames_multiple:
            raise ValueError(
                f"clip_frames must be 1 + T with T a multiple of frames_multiple ({self.frames_multiple}), "
                f"got {self.clip_frames}"
            )
        if self.fps is not None and not (self.fps > 0 and self.fps < float("inf")):
            raise ValueError(f"fps must be a positive frame rate or None, got {self.fps}")
        if self.mp_context not in MP_CONTEXTS:
            raise ValueError(f"mp_context must be one of {MP_CONTEXTS}, got {self.mp_context!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")

    def source_size(self, sc: SourceConfig) -> int:
        """The square side (or bucket pixel budget) of source ``sc``'s batches."""
        return self.image_size if sc.image_size is None else sc.image_size

    def batch_size(self, media: str) -> int:
        """Per-rank batch size of an 'image' or 'video' batch."""
        return self.image_batch_size if media == "image" else self.video_batch_size

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        return config_from_dict(cls, data, where="data")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
