"""Video teachers: V-JEPA 2 and VideoMAE, through transformers.

Each takes clips (B, 3, T, H, W) in [-1, 1] (channels then time) and returns tokens (B, T', h * w, D) with
T' = frames / tubelet, on the grid (T', h, w). Both models take (B, T, 3, H, W); the adapter transposes.
- V-JEPA 2 (``VJEPA2Model``, encoder only: the predictor is skipped): its 3D RoPE derives a token's
  (t, h, w) from its flat index assuming a square ``crop_size`` grid, so the frames are always resized to
  crop_size x crop_size (a non-square clip is stretched). Any number of frames works (RoPE positions); it
  must be a multiple of the tubelet (2) unless ``num_frames`` resamples the clip.
- VideoMAE (``VideoMAEModel``): a fixed sin-cos table over exactly ``num_frames / tubelet x (image_size /
  patch)^2`` positions, so clips are resized to the config's image_size and resampled to its num_frames.
  With ``use_mean_pooling`` (the released checkpoints) the encoder has no final norm: tokens are the last
  layer's output as is.
Resampling in time picks frames at evenly spaced indices (nearest frame), as video processors sample.
Both use the ImageNet mean / std.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from hydra_x.teachers.base import FrozenTeacher, TeacherOutput, as_pair, resize


def resample_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C, frames, H, W) at evenly spaced frame indices (first and last kept)."""
    t = x.shape[2]
    if t == frames:
        return x
    index = torch.linspace(0, t - 1, frames, device=x.device).round().long()
    return x.index_select(2, index)


class VideoTeacher(FrozenTeacher):
    video = True

    def __init__(self, model: torch.nn.Module, *, num_frames: int | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.num_frames = num_frames
        if num_frames is not None and num_frames % self.tubelet_size:
            raise ValueError(f"num_frames={num_frames} is not a multiple of the tubelet size {self.tubelet_size}")

    @property
    def tubelet_size(self) -> int:
        return int(self.config.tubelet_size)

    def frame_size(self) -> tuple[int, int]:
        raise NotImplementedError

    def frames_for(self, t: int) -> int:
        frames = self.num_frames or t
        if frames % self.tubelet_size:
            raise ValueError(
                f"the {self.kind!r} teacher needs a multiple of {self.tubelet_size} frames (its tubelet); got "
                f"{t}. Pass the T frames after the anchor, or set num_frames to resample"
            )
        return frames

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = resample_frames(x, self.frames_for(x.shape[2]))
        x = resize(x.float().transpose(1, 2), self.frame_size())  # (B, T, 3, H', W'): the models' layout
        return self.normalize(x, channel_dim=2).to(self.dtype)

    def _output(self, out, x: torch.Tensor, layers: tuple[int, ...]) -> TeacherOutput:
        p = self.patch_size
        grid = (x.shape[1] // self.tubelet_size, x.shape[-2] // p, x.shape[-1] // p)
        split = lambda t: rearrange(t, "b (s n) d -> b s n d", s=grid[0])  # (B, T', N, D)
        hidden = {k: split(out.hidden_states[k]) for k in layers}
        return TeacherOutput(split(out.last_hidden_state), grid, hidden)


class VJEPA2Teacher(VideoTeacher):
    kind = "vjepa2"
    model_types = ("vjepa2",)

    @classmethod
    def model_class(cls, config) -> type:
        from transformers import VJEPA2Model

        return VJEPA2Model

    def frame_size(self) -> tuple[int, int]:
        return as_pair(self.config.crop_size)

    def _forward(self, x: torch.Tensor, layers: tuple[int, ...]) -> TeacherOutput:
        out = self.model(pixel_values_videos=x, skip_predictor=True, output_hidden_states=bool(layers))
        return self._output(out, x, layers)


class VideoMAETeacher(VideoTeacher):
    kind = "videomae"
    model_types = ("videomae",)

    def __init__(self, model: torch.nn.Module, *, num_frames: int | None = None, **kwargs: Any) -> None:
        fixed = int(model.config.num_frames)
        if num_frames not in (None, fixed):
            raise ValueError(f"VideoMAE's position table fixes num_frames to {fixed}; got {num_frames}")
        super().__init__(model, num_frames=fixed, **kwargs)

    @classmethod
    def model_class(cls, config) -> type:
        from transformers import VideoMAEModel

        return VideoMAEModel

    def frame_size(self) -> tuple[int, int]:
        return as_pair(self.config.image_size)

    def _forward(self, x: torch.Tensor, layers: tuple[int, ...]) -> TeacherOutput:
        out = self.model(pixel_values=x, output_hidden_states=bool(layers))
        return self._output(out, x, layers)


def load_vjepa2(name_or_path: str | Path, **kwargs: Any) -> VJEPA2Teacher:
    return VJEPA2Teacher.from_pretrained(name_or_path, **kwargs)


def load_videomae(name_or_path: str | Path, **kwargs: Any) -> VideoMAETeacher:
    return VideoMAETeacher.from_pretrained(name_or_path, **kwargs)
