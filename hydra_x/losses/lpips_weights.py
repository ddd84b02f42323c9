"""The official files that LPIPS-VGG's weights are converted from: where they are looked for, their download.

Two published files make the weights (``hydra_x.losses.lpips`` converts them into one safetensors file):

    vgg16-397923af.pth   torchvision's VGG16, ImageNet (IMAGENET1K_V1), 528 MiB, from download.pytorch.org
    vgg.pth              the lpips package's v0.1 linear heads, 7 KiB, from github.com/richzhang/PerceptualSimilarity

Both are looked for in torch.hub's cache, ``$TORCH_HOME/hub/checkpoints/`` (``~/.cache/torch/hub/checkpoints``
by default), where torchvision itself keeps its VGG16; the heads there are named ``lpips_v0.1_vgg.pth``, and
an installed ``lpips`` package's own ``weights/v0.1/vgg.pth`` is used as well. A missing file may be
downloaded into that cache. Every file found or downloaded is checked against the SHA-256 of the published
file before use (a truncated download or another checkpoint under the same name is an error, not a silently
different loss), and is read with ``torch.load(weights_only=True)``: tensors only, no code runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hydra_x.errors import InputError  # noqa: E402
from hydra_x.hub import check_reachable, file_sha256  # noqa: E402

log = logging.getLogger(__name__)

ENV_VAR = "HYDRA_X_LPIPS_WEIGHTS"  # a converted weights file (or a folder holding one): the lookup's first place
CONVERTED_FILENAME = "lpips_vgg.safetensors"


class LPIPSWeightsError(FileNotFoundError, InputError):
    """No LPIPS weights where they were asked for or looked for; the message says how to supply them (an
    InputError: the command line reports it in one line, exit status 2)."""


class WeightsHashError(InputError):
    """A file under an official name that is not the published file (truncated, corrupt, or another one)."""


@dataclass(eq=False)  # hashable by identity; tests may set sha256 to that of a planted file
class OfficialFile:
    what: str
    filename: str  # its name in torch.hub's cache
    url: str
    sha256: str  # of the published file
    in_lpips_package: str | None = None  # its path inside an installed lpips package, if it ships there


VGG16 = OfficialFile(
    "torchvision's VGG16 ImageNet weights",
    "vgg16-397923af.pth",
    "https://download.pytorch.org/models/vgg16-397923af.pth",
    "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
)
LINEAR_HEADS = OfficialFile(
    "the lpips package's v0.1 VGG linear heads (lpips/weights/v0.1/vgg.pth)",
    "lpips_v0.1_vgg.pth",
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
    "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    in_lpips_package="weights/v0.1/vgg.pth",
)
OFFICIAL_FILES = (VGG16, LINEAR_HEADS)


def cache_dir() -> Path:
    """torch.hub's checkpoint folder (follows ``TORCH_HOME``): the official files and the converted one."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path() -> Path:
    """Where the default lookup finds, and conversion writes, the converted LPIPS weights."""
    return cache_dir() / CONVERTED_FILENAME


def check_sha256(path: Path, spec: OfficialFile) -> Path:
    got = file_sha256(path)
    if got != spec.sha256:
        raise WeightsHashError(
            f"{path} is not {spec.what}: its SHA-256 is {got}, the published file's ({spec.url}) is {spec.sha256}. "
            "Delete it (the lookup then downloads the published one) or replace it with the published file"
        )
    return path


def load_pth(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors (``weights_only``: never runs pickled code); CUDA storages land on the CPU."""
    return torch.load(str(path), map_location="cpu", weights_only=True)


def lpips_package_dir() -> Path | None:
    """The folder of an installed lpips package, found without importing it (it would import torchvision)."""
    found = importlib.util.find_spec("lpips")
    return Path(found.origin).parent if found is not None and found.origin else None


def candidates(spec: OfficialFile) -> list[Path]:
    """Where ``spec`` is looked for, in order: torch.hub's cache, then an installed lpips package."""
    places = [cache_dir() / spec.filename]
    package = lpips_package_dir() if spec.in_lpips_package else None
    if package is not None:
        places.append(package / spec.in_lpips_package)
    return places


def download(spec: OfficialFile, dst: Path, progress: bool = True) -> None:
    """Download ``spec`` to ``dst``; torch.hub checks the full SHA-256 before moving the file into place."""
    check_reachable(spec.url)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(spec.url, str(dst), hash_prefix=spec.sha256, progress=progress)
    except RuntimeError as err:
        if "invalid hash value" not in str(err):
            raise
        raise WeightsHashError(f"the download of {spec.url} is not {spec.what} (so it was not kept): {err}") from err


def official_file(spec: OfficialFile, *, allow_download: bool, tried: list[str]) -> Path | None:
    """The checked path of ``spec``: found in its places, else downloaded into the cache (if allowed), else None
    with the reasons appended to ``tried``. A file found with the wrong hash raises WeightsHashError."""
    for place in candidates(spec):
        if place.is_file():
            return check_sha256(place, spec)
        tried.append(f"{place} (not found)")
    if not allow_download:
        return None
    dst = cache_dir() / spec.filename
    try:
        download(spec, dst)
    except WeightsHashError:  # something answered with other bytes: worth an error, not a quiet "not available"
        raise
    except Exception as err:  # offline, DNS, HTTP error: all mean "not available"
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        tried.append(f"download of {spec.url} ({reason})")
        return None
    return check_sha256(dst, spec)  # whatever download() did, the file in place is the published one


def given_path(weights: str | Path | None) -> tuple[Path, str] | None:
    """The explicitly named weights (argument, else ``$HYDRA_X_LPIPS_WEIGHTS``) and who named them, or None."""
    if weights is not None:
        source = "the path given"
    elif os.environ.get(ENV_VAR):
        weights, source = os.environ[ENV_VAR], f"${ENV_VAR}"
    else:
        return None
    path = Path(weights).expanduser()
    return (path / CONVERTED_FILENAME if path.is_dir() else path), source
