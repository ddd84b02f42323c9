"""LPIPS (Zhang et al. 2018), VGG16 variant, in plain torch: the same numbers as the ``lpips`` package.

    x, y in [-1, 1] -> scaling layer ((x - shift) / scale) -> VGG16 ``features`` -> taps after relu1_2,
    relu2_2, relu3_3, relu4_3, relu5_3 -> unit-normalise channels -> squared difference -> 1x1 linear head
    (no bias, non-negative weights) -> spatial mean -> sum over the five taps.

Weights live in ONE safetensors file with these keys:

    features.{i}.weight, features.{i}.bias   i in 0 2 5 7 10 12 14 17 19 21 24 26 28 (torchvision's VGG16
                                             ``features`` indices, ImageNet weights IMAGENET1K_V1)
    lin{k}.weight                            k in 0..4, shape (1, C_k, 1, 1), C = 64 128 256 512 512
                                             (the lpips package's weights/v0.1/vgg.pth ``lin{k}.model.1.weight``)

``python -m hydra_x.losses.lpips convert --out lpips_vgg.safetensors`` builds it from the official files
(needs torchvision and lpips installed, or ``--vgg`` / ``--lin`` paths to the two .pth files; they are
loaded with ``torch.load(weights_only=True)``). Neither package is a dependency of hydra-x, and the
conversion cannot run in an offline environment without them. A freshly built ``LPIPS()`` has random
weights and is only useful for tests.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
from einops import rearrange
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # features indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
TAP_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's ScalingLayer: ImageNet statistics expressed for [-1, 1] inputs
SCALE = (0.458, 0.448, 0.450)
DEFAULT_FILENAME = "lpips_vgg.safetensors"
TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` up to relu5_3 (the final max-pool is never tapped)."""
    layers: list[nn.Module] = []
    cin = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(item), kernel_size=3, padding=1), nn.ReLU()]
            cin = int(item)
    return nn.Sequential(*layers)


def weight_keys() -> list[str]:
    convs = [i for i, m in enumerate(vgg16_features()) if isinstance(m, nn.Conv2d)]
    return [f"features.{i}.{p}" for i in convs for p in ("weight", "bias")] + [f"lin{k}.weight" for k in range(5)]


class LPIPS(nn.Module):
    """Frozen perceptual distance: (B, 3, H, W) or (B, 3, T, H, W) pairs in [-1, 1] -> (B,).

    Clips are compared frame by frame and averaged over frames. Parameters never require grad; gradients
    flow to the inputs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = vgg16_features()
        for k, c in enumerate(TAP_CHANNELS):
            lin = nn.Conv2d(c, 1, kernel_size=1, bias=False)
            nn.init.uniform_(lin.weight, 0.0, 2.0 / c)  # random but valid (non-negative) until loaded
            self.add_module(f"lin{k}", lin)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # no dropout or norm inside, but a parent's .train() must not matter

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features[: TAPS[-1] + 1]):
            h = layer(h)
            if i in TAPS:
                out.append(h)
        return out

    @staticmethod
    def _unit(f: torch.Tensor) -> torch.Tensor:
        # lpips: f / (||f|| + 1e-10). The 1e-20 inside the root keeps the gradient finite where a feature
        # vector is exactly zero (ReLU), and changes no value at fp32 precision otherwise.
        return f / (torch.sqrt(f.square().sum(1, keepdim=True) + 1e-20) + 1e-10)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim not in (4, 5) or x.shape[1] != 3:
            raise ValueError(f"LPIPS takes two (B, 3, H, W) or (B, 3, T, H, W) tensors; got {x.shape}, {y.shape}")
        frames = x.shape[2] if x.ndim == 5 else 1
        if x.ndim == 5:
            x, y = (rearrange(t, "b c t h w -> (b t) c h w") for t in (x, y))
        b = x.shape[0]
        taps = self._taps(torch.cat((x, y)))  # one pass over both halves
        total = 0.0
        for k, f in enumerate(taps):
            fx, fy = self._unit(f[:b]), self._unit(f[b:])
            total = total + getattr(self, f"lin{k}")((fx - fy).square()).mean((1, 2, 3))  # (B * T,)
        return total.view(-1, frames).mean(1)  # (B,)


def save_lpips(model: LPIPS, path: str | Path) -> Path:
    path = Path(path)
    state = {k: v.detach().contiguous().cpu().float() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", "model": "lpips-vgg16-v0.1"})
    return path


def lpips_from_file(path: str | Path) -> LPIPS:
    """An LPIPS with the weights of one safetensors file; every key must be present, none extra."""
    state = load_file(str(path))
    expected = set(weight_keys())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{path} is not an LPIPS-VGG weights file: missing keys {missing}, unexpected {unexpected}")
    if any((state[f"lin{k}.weight"] < 0).any() for k in range(5)):
        raise ValueError(f"{path}: LPIPS linear heads must be non-negative")
    model = LPIPS()
    model.load_state_dict(state, strict=False)  # the scaling buffers are constants, not in the file
    return model.requires_grad_(False).eval()


def load_lpips(
    weights: str | Path | None = None,
    *,
    repo_id: str | None = None,
    filename: str = DEFAULT_FILENAME,
    required: bool = True,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> LPIPS | None:
    """LPIPS from a local file (or a folder holding ``filename``), else from Hub ``repo_id`` / ``filename``.

    When no weights are found: ``required=True`` raises FileNotFoundError naming everything tried;
    ``required=False`` logs one warning that LPIPS is off and returns None. A file that is found but is
    not LPIPS weights is always an error.
    """
    tried: list[str] = []
    path: Path | None = None
    if weights is not None:
        local = Path(weights)
        local = local / filename if local.is_dir() else local
        if local.is_file():
            path = local
        else:
            tried.append(f"local file {local} (not found)")
    if path is None and repo_id is not None:
        from huggingface_hub import hf_hub_download

        try:
            hub = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
            path = Path(hf_hub_download(repo_id, filename, **hub))
        except Exception as err:  # offline, no such repo or file: all mean "not available"
            tried.append(f"Hub {repo_id}/{filename} ({type(err).__name__}: {str(err).splitlines()[0][:200]})")
    if path is None:
        what = "; ".join(tried) or "no weights path or Hub repo_id given"
        if required:
            raise FileNotFoundError(
                f"LPIPS weights not found (tried: {what}). Build them with `python -m hydra_x.losses.lpips "
                "convert --out lpips_vgg.safetensors`, or allow running without LPIPS"
            )
        log.warning("LPIPS is off: no weights found (tried: %s); training continues without the LPIPS term", what)
        return None
    return lpips_from_file(path)


# ---------------------------------------------------------------------------------------------- conversion


def _load_pth(path: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(str(path), map_location="cpu", weights_only=True)  # tensors only: never runs code


def _official_vgg16() -> dict[str, torch.Tensor]:
    try:
        from torchvision.models import VGG16_Weights
    except ImportError as err:
        raise RuntimeError(
            f"torchvision is not installed: install it, or pass --vgg PATH to {TORCHVISION_VGG16_FILE} "
            "(https://download.pytorch.org/models/" + TORCHVISION_VGG16_FILE + ")"
        ) from err
    url = VGG16_Weights.IMAGENET1K_V1.url
    return torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)


def _official_lin() -> dict[str, torch.Tensor]:
    try:
        import lpips
    except ImportError as err:
        raise RuntimeError(
            "the lpips package is not installed: `pip install lpips`, or pass --lin PATH to its weights/v0.1/vgg.pth"
        ) from err
    return _load_pth(Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth")


def convert_official(out: str | Path, *, vgg: str | Path | None = None, lin: str | Path | None = None) -> Path:
    """Write the single LPIPS weights file from torchvision's VGG16 and lpips' v0.1 linear heads."""
    vgg_state = _load_pth(vgg) if vgg is not None else _official_vgg16()
    lin_state = _load_pth(lin) if lin is not None else _official_lin()
    state = {k: vgg_state[k] for k in weight_keys() if k.startswith("features.")}
    for k in range(5):
        # lpips' NetLinLayer is Sequential(Dropout, Conv2d): the conv is model.1 (model.0 without dropout).
        key = next((f"lin{k}.model.{i}.weight" for i in (1, 0) if f"lin{k}.model.{i}.weight" in lin_state), None)
        if key is None:
            raise KeyError(f"lin{k}.model.1.weight not in the linear-head file (keys: {sorted(lin_state)[:10]})")
        state[f"lin{k}.weight"] = lin_state[key]
    model = LPIPS()
    model.load_state_dict(state, strict=False)
    return save_lpips(model, out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hydra_x.losses.lpips", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="build the LPIPS-VGG safetensors file from the official weights")
    conv.add_argument("--out", default=DEFAULT_FILENAME, help="output .safetensors path")
    conv.add_argument("--vgg", default=None, help=f"local {TORCHVISION_VGG16_FILE} (default: via torchvision)")
    conv.add_argument("--lin", default=None, help="local lpips weights/v0.1/vgg.pth (default: the lpips package)")
    args = parser.parse_args(argv)
    try:
        path = convert_official(args.out, vgg=args.vgg, lin=args.lin)
    except RuntimeError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
