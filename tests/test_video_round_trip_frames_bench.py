"""benchmarks/video_round_trip_frames.py: the per-frame table counts what the shapes reader finds in each frame."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hydra_x.data.shapes import BACKGROUND

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from video_round_trip_frames import frame_table  # noqa: E402


class PixelCodec(nn.Module):
    """Stands in for a tokenizer: 'encodes' a clip as its pixels and 'decodes' them with ``damage`` applied."""

    def __init__(self, damage=lambda x: x) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # a device to read
        self.config = SimpleNamespace(decoder="regression")
        self.damage = damage

    def _dtype(self) -> torch.dtype:
        return torch.float32

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor, video: bool) -> torch.Tensor:
        assert video
        return self.damage(z.clone())


def blank_between_anchors(x: torch.Tensor) -> torch.Tensor:
    """The frames between each latent step's last frame (0, 4, 8) painted with the background."""
    background = torch.tensor(BACKGROUND, dtype=x.dtype) / 127.5 - 1
    for f in range(x.shape[2]):
        if f % 4:
            x[:, :, f] = background[None, :, None, None]
    return x


def test_a_perfect_codec_reads_every_frame_and_a_blanked_one_only_its_anchors():
    perfect = frame_table(PixelCodec(), size=32, frames=9, batch_size=12, seed=0)
    assert perfect["n"] == 24 and perfect["latent_steps"] == 9  # the pixels stand in for the latents
    assert [row[1:4] for row in perfect["rows"]] == [(1.0, 1.0, 0.0)] * 9
    assert perfect["summary"]["presence"] == 1.0 and perfect["summary"]["motion_accuracy"] == 1.0
    assert all(row[4] > 90 for row in perfect["rows"])  # PSNR of identical frames: the clamp's 1e-10

    blanked = frame_table(PixelCodec(blank_between_anchors), size=32, frames=9, batch_size=12, seed=0)
    for frame, kind, colour, missed, psnr in blanked["rows"]:
        if frame % 4:
            assert (kind, colour, missed) == (0.0, 0.0, 1.0) and psnr < 40, frame
        else:
            assert (kind, colour, missed) == (1.0, 1.0, 0.0) and psnr > 90, frame
    assert blanked["summary"]["presence"] == 0.0
    assert blanked["summary"]["motion_accuracy"] == pytest.approx(0.0)
