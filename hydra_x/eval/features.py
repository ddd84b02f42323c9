"""Feature networks for the distribution metrics: Inception-v3 (FID) and I3D (FVD), with their weights.

    load_feature_net("inception")                     # rFID: pool3 of the FID Inception, (N, 2048)
    load_feature_net("i3d")                           # rFVD: I3D (TF-Hub i3d-kinetics-400), (N, 400)
    load_feature_net("inception", weights="/data/pt_inception-2015-12-05-6726825d.pth")
    load_feature_net("tiny-image:/tmp/t.safetensors") # offline tests only (hydra_x.eval.tiny); NOT FID / FVD

Weights: a local file (or a folder holding the file under its usual name), else torch.hub's cache
(``$TORCH_HOME/hub/checkpoints/<file>``), else a download from the usual URL into that cache. When none
works, :class:`FeatureWeightsError` says which file is needed, the URL tried and where to put it. The
download is preceded by a short connection check so that an offline machine fails in seconds, not at the
operating system's TCP timeout.

Every net takes pixels in [-1, 1] and does its own quantisation to 8-bit levels, resizing and
normalisation, so callers hand over exactly what they would write to disk.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.eval.inception import FIDInceptionV3, full_fp32_convolutions
from hydra_x.hub import check_reachable


class FeatureWeightsError(RuntimeError):
    """The real feature weights were asked for but could not be found or downloaded."""


@runtime_checkable
class FeatureNet(Protocol):
    kind: str  # "image": (N, 3, H, W) input; "video": (N, 3, T, H, W)
    dim: int
    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] -> (N, dim) float32 features (no gradients)."""
        ...


@dataclass(frozen=True)
class WeightsFile:
    filename: str
    url: str
    hash_prefix: str | None  # sha256 prefix checked after a download (torch.hub's convention); None: unchecked


WEIGHTS: dict[str, WeightsFile] = {
    "inception": WeightsFile(
        "pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "6726825d",
    ),
    # StyleGAN-V's TorchScript port of TF-Hub's i3d-kinetics-400 (the network of the original FVD code).
    "i3d": WeightsFile("i3d_torchscript.pt", "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1", None),
}
ALIASES = {"inception": "inception", "inception-v3": "inception", "fid": "inception", "i3d": "i3d", "fvd": "i3d"}
I3D_SIZE = 224
I3D_DIM = 400


def cached_weights_path(name: str) -> Path:
    """Where torch.hub keeps (and where a user may put) the weights file of ``name``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS[name].filename


def resolve_weights(name: str, weights: str | Path | None = None, *, progress: bool = False) -> Path:
    """The weights file of ``name`` ("inception" or "i3d"): local path, torch.hub cache, or a download."""
    spec = WEIGHTS[name]
    if weights is not None:
        path = Path(weights).expanduser()
        path = path / spec.filename if path.is_dir() else path
        if not path.is_file():
            raise FeatureWeightsError(
                f"{name} weights file {path} does not exist (expected {spec.filename}, from {spec.url})"
            )
        return path
    cached = cached_weights_path(name)
    if cached.is_file():
        return cached
    try:
        check_reachable(spec.url)
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(spec.url, str(cached), hash_prefix=spec.hash_prefix, progress=progress)
    except Exception as err:  # offline, DNS, HTTP error, hash mismatch: all mean "not available"
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        raise FeatureWeightsError(
            f"the {name} feature weights {spec.filename} are not available: no local path was given, "
            f"{cached} does not exist, and downloading {spec.url} failed ({reason}). Download {spec.filename} "
            f"from {spec.url} on a machine with internet access, then either put it at {cached} (torch.hub's "
            f"cache; TORCH_HOME moves it) or pass its path: load_feature_net({name!r}, weights='/path/to/"
            f"{spec.filename}') (the eval command's feature-weights option)"
        ) from err
    return cached


def load_inception(path: str | Path, device: torch.device | str = "cpu") -> FIDInceptionV3:
    """The FID Inception from pytorch-fid's / torch-fidelity's weights file (tensors only, strict keys)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as err:
        raise ValueError(f"{path} could not be read as a PyTorch state dict ({type(err).__name__}: {err})") from err
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict (found {type(state).__name__})")
    net = FIDInceptionV3()
    state = dict(state)
    for key, buf in net.state_dict().items():
        # BatchNorm's step counter does not affect inference; a file written without it is still complete.
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, buf)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} is not the FID Inception-v3 weights file: {err}") from err
    return net.to(device)


class I3DFeatures(nn.Module):
    """Clips (N, 3, T, H, W) in [-1, 1] -> (N, 400) I3D features, the FVD convention of StyleGAN-V.

    Frames are quantised to 8-bit levels, scaled to [0, 1], resized so the short side is 224 (bilinear,
    ``align_corners=False``), centre-cropped to 224 x 224, mapped back to [-1, 1] (TF-Hub's I3D input range)
    and given to the detector with ``rescale=False, resize=False, return_features=True``: the logits layer
    before the softmax, as in the original FVD code.
    """

    kind = "video"
    dim = I3D_DIM
    name = "i3d-kinetics-400-fvd"

    def __init__(self, detector: nn.Module, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.detector = detector
        self._device = torch.device(device)

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) in [-1, 1] -> (N, 3, T, 224, 224) in [-1, 1]."""
        n, c, t, h, w = x.shape
        x = ((torch.nan_to_num(x.float(), nan=0.0).clamp(-1, 1) + 1) * 127.5).round() / 255  # 8-bit, in [0, 1]
        if (h, w) != (I3D_SIZE, I3D_SIZE):
            scale = I3D_SIZE / min(h, w)
            size = (I3D_SIZE, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), I3D_SIZE)
            frames = x.transpose(1, 2).reshape(n * t, c, h, w)  # (N * T, 3, H, W)
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
            top, left = (size[0] - I3D_SIZE) // 2, (size[1] - I3D_SIZE) // 2
            frames = frames[:, :, top : top + I3D_SIZE, left : left + I3D_SIZE]
            x = frames.reshape(n, t, c, I3D_SIZE, I3D_SIZE).transpose(1, 2)
        return ((x - 0.5) * 2).contiguous()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D takes clips (N, 3, T, H, W) in [-1, 1], got shape {tuple(x.shape)}")
        with full_fp32_convolutions():
            out = self.detector(self.preprocess(x.to(self._device)), rescale=False, resize=False, return_features=True)
        if out.ndim != 2 or out.shape != (x.shape[0], self.dim):
            raise ValueError(f"the I3D detector returned shape {tuple(out.shape)}, expected ({x.shape[0]}, {self.dim})")
        return out.float()


def load_i3d(path: str | Path, device: torch.device | str = "cpu") -> I3DFeatures:
    """I3D from StyleGAN-V's ``i3d_torchscript.pt``.

    ``torch.jit.load`` reads a TorchScript archive: code in TorchScript's restricted language plus tensors,
    not arbitrary pickled Python objects (still: load only files from a source you trust).
    """
    try:
        with warnings.catch_warnings():
            # torch 2.13 marks TorchScript deprecated; the published I3D exists only in this format.
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit.*")
            detector = torch.jit.load(str(path), map_location=device)
    except Exception as err:
        raise ValueError(f"{path} could not be loaded as a TorchScript I3D ({type(err).__name__}: {err})") from err
    return I3DFeatures(detector.eval(), device)


def load_feature_net(name: str, weights: str | Path | None = None, device: torch.device | str = "cpu") -> FeatureNet:
    """A feature net by name: "inception" (FID), "i3d" (FVD), or "tiny-image:<path>" / "tiny-video:<path>".

    ``weights`` is a local file (or folder) for the real nets; for the tiny test nets it may replace the
    ``:<path>`` suffix. Real weights that cannot be found or downloaded raise :class:`FeatureWeightsError`.
    """
    head, _, suffix = name.partition(":")
    if head in ("tiny-image", "tiny-video"):
        from hydra_x.eval.tiny import load_tiny_feature_net

        path = suffix or weights
        if not path:
            raise ValueError(f"{head} needs a file: load_feature_net('{head}:<path>') (see hydra_x.eval.tiny)")
        return load_tiny_feature_net(head.removeprefix("tiny-"), path, device)
    key = ALIASES.get(name.lower())
    if key is None:
        known = sorted(ALIASES) + ["tiny-image:<path>", "tiny-video:<path>"]
        raise ValueError(f"unknown feature net {name!r}; known: {', '.join(known)}")
    path = resolve_weights(key, weights)
    return load_inception(path, device) if key == "inception" else load_i3d(path, device)
