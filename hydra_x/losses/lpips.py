"""LPIPS (Zhang et al. 2018), VGG16 variant, in plain torch: the same numbers as the ``lpips`` package.

    x, y in [-1, 1] -> scaling layer ((x - shift) / scale) -> VGG16 ``features`` -> taps after relu1_2,
    relu2_2, relu3_3, relu4_3, relu5_3 -> unit-normalise channels -> squared difference -> 1x1 linear head
    (no bias, non-negative weights) -> spatial mean -> sum over the five taps.

Weights live in ONE safetensors file with these keys:

    features.{i}.weight, features.{i}.bias   i in 0 2 5 7 10 12 14 17 19 21 24 26 28 (torchvision's VGG16
                                             ``features`` indices, ImageNet weights IMAGENET1K_V1)
    lin{k}.weight                            k in 0..4, shape (1, C_k, 1, 1), C = 64 128 256 512 512
                                             (the lpips package's weights/v0.1/vgg.pth ``lin{k}.model.1.weight``)

``load_lpips()`` without a path finds that file by the default lookup, first hit wins:

    1. ``$HYDRA_X_LPIPS_WEIGHTS``: the file, or a folder holding lpips_vgg.safetensors (as a path argument)
    2. ``$TORCH_HOME/hub/checkpoints/lpips_vgg.safetensors`` (torch.hub's cache, ~/.cache/torch by default)
    3. the two official files found in that cache (torchvision keeps its VGG16 there) or in an installed lpips
       package, hash-checked and converted into (2)
    4. the official files missing from (3) downloaded into the cache from their published URLs (SHA-256
       checked), then converted into (2)

A path that is named (argument or environment variable) and does not exist is an error, never replaced by
another file. ``python -m hydra_x.losses.lpips convert`` runs steps 3-4 and writes (2) (``--out`` elsewhere;
``--vgg`` / ``--lin`` take local copies of the two official files). ``hydra_x.losses.lpips_weights`` has
the files' URLs and hashes. A freshly built ``LPIPS()`` has random weights and is only useful for tests.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
from einops import rearrange
from safetensors.torch import load_file, save_file

from hydra_x.hub import file_sha256
from hydra_x.losses import lpips_weights as official
from hydra_x.losses.lpips_weights import LINEAR_HEADS, VGG16, LPIPSWeightsError

log = logging.getLogger(__name__)

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # features indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
TAP_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's ScalingLayer: ImageNet statistics expressed for [-1, 1] inputs
SCALE = (0.458, 0.448, 0.450)
DEFAULT_FILENAME = official.CONVERTED_FILENAME


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
    """Write the weights file, atomically: a process that finds it (another rank, say) never reads half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu().float() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "model": "lpips-vgg16-v0.1"})
    os.replace(tmp, path)
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


def how_to_supply() -> str:
    """Every way to provide the weights, for error messages."""
    cache = official.cache_dir()
    return (
        f"Supply them in one of these ways: put the converted file at {official.cached_weights_path()} or point "
        f"${official.ENV_VAR} (or the weights option) at it; build it there with `python -m hydra_x.losses.lpips "
        f"convert`, which converts {VGG16.filename} ({VGG16.url}) and the lpips v0.1 heads vgg.pth "
        f"({LINEAR_HEADS.url}) found in {cache} (the heads as {LINEAR_HEADS.filename}) or in an installed lpips "
        "package, and downloads those missing (SHA-256 checked); `--vgg PATH --lin PATH` converts local copies"
    )


def find_lpips_weights(weights: str | Path | None = None, *, allow_download: bool = True) -> Path:
    """The LPIPS weights file: the path given, else the default lookup (see the module docstring).

    Raises LPIPSWeightsError naming everything tried and how to supply the weights; WeightsHashError when an
    official file found is not the published one.
    """
    given = official.given_path(weights)
    if given is not None:
        path, source = given
        if path.is_file():
            return path
        raise LPIPSWeightsError(f"LPIPS weights {path} ({source}) not found. {how_to_supply()}")
    cached = official.cached_weights_path()
    if cached.is_file():
        return cached
    tried = [f"{cached} (not found)"]
    sources = {
        spec: official.official_file(spec, allow_download=allow_download, tried=tried) for spec in (VGG16, LINEAR_HEADS)
    }
    if None in sources.values():
        missing = " and ".join(spec.filename for spec, path in sources.items() if path is None)
        raise LPIPSWeightsError(
            f"LPIPS weights not found: {missing} missing (tried: {'; '.join(tried)}). {how_to_supply()}"
        )
    log.info("converting the official LPIPS-VGG files into %s", cached)
    return write_converted(cached, sources[VGG16], sources[LINEAR_HEADS])


def load_lpips(
    weights: str | Path | None = None,
    *,
    repo_id: str | None = None,
    filename: str = DEFAULT_FILENAME,
    required: bool = True,
    allow_download: bool = True,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> LPIPS | None:
    """LPIPS from Hub ``repo_id`` / ``filename``, else from a local file (or a folder holding ``filename``), else
    from the default lookup.

    Only the default lookup may come up empty: then ``required=True`` raises LPIPSWeightsError (naming what was
    tried and how to supply the weights) and ``required=False`` logs one warning that LPIPS is off and returns
    None. A named path or Hub file that cannot be read, or a file that is not LPIPS weights, is always an error.
    """
    if repo_id is not None:
        from huggingface_hub import hf_hub_download

        hub = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        try:
            return lpips_from_file(hf_hub_download(repo_id, filename, **hub))
        except Exception as err:  # offline, no such repo or file
            reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            raise LPIPSWeightsError(f"LPIPS weights {repo_id}/{filename} on the Hub: {reason}") from err
    if weights is not None and Path(weights).is_dir():
        weights = Path(weights) / filename
    try:
        path = find_lpips_weights(weights, allow_download=allow_download)
    except LPIPSWeightsError as err:
        if required or official.given_path(weights) is not None:
            raise
        log.warning("LPIPS is OFF: %s", err)
        return None
    return lpips_from_file(path)


# ---------------------------------------------------------------------------------------------- conversion


def _local_official(path: str | Path, spec: official.OfficialFile) -> Path:
    """A local copy named by the user: any name; another hash than the published file's is said, not refused."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LPIPSWeightsError(f"{path} not found ({spec.what}, published at {spec.url})")
    if file_sha256(path) != spec.sha256:
        log.warning("%s is not the published %s (SHA-256 differs): converting it anyway", path, spec.what)
    return path


def convert_official(
    out: str | Path | None = None,
    *,
    vgg: str | Path | None = None,
    lin: str | Path | None = None,
    allow_download: bool = True,
) -> Path:
    """Write the single LPIPS weights file (default: where the lookup finds it) from torchvision's VGG16 and
    lpips' v0.1 linear heads: local copies ``vgg`` / ``lin``, else the official files found or downloaded."""
    out = Path(out) if out is not None else official.cached_weights_path()
    tried: list[str] = []
    paths = []
    for given, spec in ((vgg, VGG16), (lin, LINEAR_HEADS)):
        found = (
            _local_official(given, spec)
            if given is not None
            else official.official_file(spec, allow_download=allow_download, tried=tried)
        )
        if found is None:
            raise LPIPSWeightsError(f"{spec.what} not available (tried: {'; '.join(tried)}). {how_to_supply()}")
        paths.append(found)
    return write_converted(out, *paths)


def write_converted(out: str | Path, vgg: Path, lin: Path) -> Path:
    """The weights file from the two official files' state dicts (torchvision's keys; lpips' ``lin{k}.model.1``)."""
    vgg_state, lin_state = official.load_pth(vgg), official.load_pth(lin)
    missing = [k for k in weight_keys() if k.startswith("features.") and k not in vgg_state]
    if missing:
        raise KeyError(f"{vgg} is not torchvision's VGG16 state dict: no {', '.join(missing[:4])}")
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
    conv.add_argument("--out", default=None, help=f"output path (default: {official.cached_weights_path()})")
    conv.add_argument("--vgg", default=None, help=f"a local {VGG16.filename} (default: the cache, or a download)")
    conv.add_argument("--lin", default=None, help="a local lpips weights/v0.1/vgg.pth (default: likewise)")
    conv.add_argument("--no-download", action="store_true", help="use only files already on this machine")
    args = parser.parse_args(argv)
    try:
        path = convert_official(args.out, vgg=args.vgg, lin=args.lin, allow_download=not args.no_download)
    except (LPIPSWeightsError, KeyError, ValueError) as err:  # a one-line error: what is missing or wrong, and why
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
