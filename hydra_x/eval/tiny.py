"""Tiny random feature networks for OFFLINE TESTS of the FID / FVD pipelines. They are not FID or FVD.

The real metrics need the Inception-v3 and I3D weights, which cannot be downloaded in CI or offline. These
nets have the same interface (:class:`hydra_x.eval.features.FeatureNet`) and are deterministic functions of a
seed, saved to and loaded from a safetensors file, so the whole pipeline (streaming statistics, sharding,
Frechet distance, report) runs end to end. A number computed with them means nothing outside the test that
made it; their names say ``NOT-FID`` / ``NOT-FVD`` so that no report can pass one off as the real metric.

    path = save_tiny_feature_net("image", tmp / "tiny_image.safetensors", seed=0)
    net = load_feature_net(f"tiny-image:{path}")    # or load_tiny_feature_net("image", path)
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

TINY_KINDS = ("image", "video")
TINY_DIM = 32
TINY_RES = 32  # frames are resized to 32 x 32 first, so any input size works
_FORMAT_KEY = "hydra_x_tiny_feature_net"


def _levels_to_unit(x: torch.Tensor) -> torch.Tensor:
    # Same 8-bit quantisation as the real nets, so the tiny pipeline exercises identical input handling.
    return ((torch.nan_to_num(x.float(), nan=0.0).clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def _init(net: nn.Module) -> None:
    # He init and zero biases keep the pooled features O(0.1) (PyTorch's default init gives O(0.01)).
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    net.requires_grad_(False).eval()


class TinyImageFeatureNet(nn.Module):
    """Images (N, 3, H, W) in [-1, 1] -> (N, 32): three random convolutions and a global mean. Tests only."""

    kind = "image"
    dim = TINY_DIM
    name = "tiny-image (NOT-FID: random test network)"

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, TINY_DIM, 3, padding=1),
            nn.ReLU(),  # non-negative pooled features, like Inception's pool3
        )
        _init(self)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} takes images (N, 3, H, W), got shape {tuple(x.shape)}")
        x = _levels_to_unit(x.to(self.net[0].weight.device))
        x = F.interpolate(x, size=(TINY_RES, TINY_RES), mode="bilinear", antialias=True, align_corners=False)
        return self.net(x).mean((2, 3))  # (N, 32)


class TinyVideoFeatureNet(nn.Module):
    """Clips (N, 3, T, H, W) in [-1, 1] -> (N, 32): two random 3D convolutions and a global mean. Tests only."""

    kind = "video"
    dim = TINY_DIM
    name = "tiny-video (NOT-FVD: random test network)"

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(3, 16, 3, stride=(1, 2, 2), padding=1),
            nn.ReLU(),
            nn.Conv3d(16, TINY_DIM, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        _init(self)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"{self.name} takes clips (N, 3, T, H, W), got shape {tuple(x.shape)}")
        n, _, t = x.shape[:3]
        x = _levels_to_unit(x.to(self.net[0].weight.device))
        frames = x.transpose(1, 2).flatten(0, 1)  # (N * T, 3, H, W)
        frames = F.interpolate(frames, size=(TINY_RES, TINY_RES), mode="bilinear", antialias=True, align_corners=False)
        x = frames.view(n, t, 3, TINY_RES, TINY_RES).transpose(1, 2)  # (N, 3, T, 32, 32)
        return self.net(x).mean((2, 3, 4))  # (N, 32)


def _build(kind: str) -> nn.Module:
    if kind not in TINY_KINDS:
        raise ValueError(f"tiny feature net kind must be one of {TINY_KINDS}, got {kind!r}")
    return TinyImageFeatureNet() if kind == "image" else TinyVideoFeatureNet()


def save_tiny_feature_net(kind: str, path: str | Path, seed: int = 0) -> Path:
    """Build a tiny feature net with weights drawn from ``seed`` and save it (safetensors); returns the path."""
    with torch.random.fork_rng(devices=[]):  # leaves the caller's random state untouched
        torch.manual_seed(seed)
        net = _build(kind)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", _FORMAT_KEY: kind, "seed": str(seed)})
    return path


def load_tiny_feature_net(kind: str, path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Load a file written by :func:`save_tiny_feature_net`; the file's kind must be ``kind``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tiny feature net file {path} does not exist (write one with save_tiny_feature_net)")
    with safe_open(str(path), framework="pt") as f:
        saved_kind = (f.metadata() or {}).get(_FORMAT_KEY)
    if saved_kind is None:
        raise ValueError(f"{path} is not a tiny feature net file (no {_FORMAT_KEY!r} metadata)")
    if saved_kind != kind:
        raise ValueError(f"{path} holds a tiny {saved_kind} feature net, but a tiny {kind} one was asked for")
    net = _build(kind)
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.to(device)
