"""What every frozen teacher adapter shares: loading, freezing, preprocessing, and inference.

An adapter wraps one transformers model. It is deliberately *not* an ``nn.Module``: a teacher stored on the
training model as an attribute then cannot end up in ``model.parameters()``, in an optimizer, in an FSDP
wrap of the student, or in a student checkpoint. Its own model is reachable as ``.model`` (e.g. to shard it
separately, as torchtitan does with frozen encoders).

Contract of ``teacher(x)``: pixels in [-1, 1], images (B, 3, H, W) or clips (B, 3, T, H, W) (channels then
time, the project's layout). The adapter resizes and normalises as its family needs, runs the model in
``dtype`` under ``torch.inference_mode()``, and returns a :class:`TeacherOutput` whose tensors are ordinary
fp32 tensors (copied outside inference mode), so they can serve as constants in a loss that is
back-propagated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from hydra_x.hf import IMAGENET_MEAN, IMAGENET_STD, auto_config, hub_kwargs, load_frozen_model

log = logging.getLogger(__name__)


@dataclass
class TeacherOutput:
    """Teacher features, safe to use as constants in a student loss."""

    tokens: torch.Tensor  # (B, N, D) images or (B, T', N, D) videos; N = h * w row-major; final norm applied
    grid: tuple[int, ...]  # (h, w) images or (T', h, w) videos
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)  # k -> tokens' shape: after layer k, no final norm


def as_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def round_to_patch(size: tuple[int, int], patch: int) -> tuple[int, int]:
    """Nearest multiple of the patch on each side (halves round up), at least one patch."""
    return tuple(max(patch, int(s / patch + 0.5) * patch) for s in size)  # type: ignore[return-value]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., C, H, W) -> (..., C, *size), bilinear with antialiasing (as the processors' PIL resize)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    lead = x.shape[:-3]
    out = F.interpolate(x.reshape(-1, *x.shape[-3:]), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.reshape(*lead, *out.shape[-3:])


class FrozenTeacher:
    """Base of the adapters. Subclasses set the class attributes and implement ``_forward``."""

    kind: ClassVar[str]
    video: ClassVar[bool] = False
    model_types: ClassVar[tuple[str, ...]]  # config.model_type values this adapter accepts
    default_mean: ClassVar[tuple[float, float, float]] = IMAGENET_MEAN
    default_std: ClassVar[tuple[float, float, float]] = IMAGENET_STD

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        dtype: torch.dtype = torch.bfloat16,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        layers: Sequence[int] = (),
        inference_mode: bool = True,
    ) -> None:
        self.model = model.to(dtype).eval().requires_grad_(False)
        if getattr(model.config, "hydra_x_random_weights", False):  # see hydra_x.teachers.tiny
            log.warning("%s teacher has RANDOM weights (a tiny test checkpoint): it distills noise", self.kind)
        self.dtype = dtype
        self.mean = tuple(mean) if mean is not None else self.default_mean
        self.std = tuple(std) if std is not None else self.default_std
        self.layers = self._check_layers(layers)
        self._stats: dict[torch.device, torch.Tensor] = {}  # (2, 3) mean and std per device
        # torch.no_grad() instead, for a teacher sharded with FSDP2: parameters it all-gathers inside
        # inference mode would become inference tensors that its later resharding may not touch.
        self.inference_mode = inference_mode

    # ------------------------------------------------------------------ construction

    @classmethod
    def accepts(cls, config) -> bool:
        return getattr(config, "model_type", None) in cls.model_types

    @classmethod
    def model_class(cls, config) -> type:
        raise NotImplementedError

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        attn_implementation: str | None = None,
        **options: Any,
    ):
        """Load from a Hub id or a local folder; ``options`` are the adapter's (image_size, mean, layers...)."""
        hub = hub_kwargs(revision, cache_dir, token, local_files_only)
        model = cls.load_model(name_or_path, dtype, attn_implementation, hub)
        teacher = cls(model, dtype=dtype, **options)
        return teacher.to(device) if device is not None else teacher

    @classmethod
    def load_model(
        cls, name_or_path: str | Path, dtype: torch.dtype, attn_implementation: str | None, hub: dict[str, Any]
    ) -> torch.nn.Module:
        """The frozen transformers model of a checkpoint whose model type this adapter accepts."""
        config = auto_config(name_or_path, **hub)
        if not cls.accepts(config):
            raise ValueError(
                f"{name_or_path} is a {config.model_type!r} checkpoint; the {cls.kind!r} teacher takes model "
                f"types {', '.join(cls.model_types)}"
            )
        if attn_implementation is not None:
            hub = {**hub, "attn_implementation": attn_implementation}
        return load_frozen_model(cls.model_class(config), name_or_path, dtype, **hub)

    def to(self, device: torch.device | str):
        self.model.to(device)
        return self

    # ------------------------------------------------------------------ properties

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    @property
    def patch_size(self) -> int:
        p = self.config.patch_size
        return int(p[0] if isinstance(p, (list, tuple)) else p)

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.config.model_type}, dim={self.dim}, layers={self.num_layers}, "
            f"patch={self.patch_size}, dtype={self.dtype}, frozen)"
        )

    # ------------------------------------------------------------------ running

    def _check_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        """Indices as transformers' hidden_states: 0 the embeddings, k after layer k; negatives count back."""
        n = self.num_layers
        out = []
        for k in layers:
            if not -(n + 1) <= k <= n:
                raise ValueError(f"layer {k} out of range: this teacher has hidden states 0..{n}")
            out.append(k % (n + 1))
        return tuple(out)

    def normalize(self, x: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
        """Pixels in [-1, 1] -> the teacher's input statistics, fp32."""
        shape = [1] * x.ndim
        shape[channel_dim] = 3
        if x.device not in self._stats:  # cached: no host-to-device copy per step
            stats = torch.tensor((self.mean, self.std), dtype=torch.float32)
            self._stats[x.device] = stats.to(x.device)
        mean, std = (t.view(shape) for t in self._stats[x.device])
        return ((x.float() + 1.0) * 0.5 - mean) / std

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] -> exactly what the transformers model is given (in ``self.dtype``)."""
        raise NotImplementedError

    def _forward(self, x: torch.Tensor, layers: tuple[int, ...]) -> TeacherOutput:
        """Preprocessed input -> output (inference tensors; copied by ``__call__``)."""
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        want = 5 if self.video else 4
        layout = "(B, 3, T, H, W)" if self.video else "(B, 3, H, W)"
        if x.ndim != want or x.shape[1] != 3:
            raise ValueError(f"the {self.kind!r} teacher takes pixels {layout}; got shape {tuple(x.shape)}")

    def __call__(self, x: torch.Tensor, layers: Sequence[int] | None = None) -> TeacherOutput:
        self._check_input(x)
        layers = self.layers if layers is None else self._check_layers(layers)
        with torch.inference_mode() if self.inference_mode else torch.no_grad():
            out = self._forward(self.preprocess(x.to(self.device, non_blocking=True)), layers)
        # Inference tensors cannot be saved for backward; an out-of-place copy made here, outside
        # inference mode, is an ordinary tensor (and fp32, so the loss's cosine runs in full precision).
        copy = lambda t: t.to(torch.float32, copy=True)
        return TeacherOutput(copy(out.tokens), out.grid, {k: copy(v) for k, v in out.hidden.items()})
