"""One adapter interface for every autoencoder the evaluation compares: HYDRA-X and diffusers' VAEs.

    encode(x) -> latent      x: (B, 3, H, W) images or (B, 3, F, H, W) clips in [-1, 1], on the model's device
    decode(latent, x) -> x̂   the same shape as x, float32, clamped to [-1, 1]

Latents are deterministic (HYDRA-X: the posterior mean; diffusers KL VAEs: ``latent_dist.mode()``, the
others ``.latent``), so a reconstruction is a function of the input alone. Video VAEs take clips as
(B, 3, F, H, W) and images as one-frame clips; 2D VAEs take images only.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from hydra_x.errors import InputError
from hydra_x.hub import file_sha256
from hydra_x.tokenizer.io import TokenizerSource, load_tokenizer

# diffusers classes that take (B, 3, F, H, W); any other class with 3D convolutions is treated as one too.
VIDEO_VAES = (
    "AutoencoderKLWan",
    "AutoencoderKLHunyuanVideo",
    "AutoencoderKLHunyuanVideo15",
    "AutoencoderKLCogVideoX",
    "AutoencoderKLLTXVideo",
    "AutoencoderKLMochi",
    "AutoencoderKLAllegro",
    "AutoencoderKLQwenImage",
    "AutoencoderKLCosmos",
)


class ModelLoadError(InputError):
    """The model cannot be loaded or cannot run the protocol; the message says why."""


@dataclass
class ReconModel:
    """Base adapter: ``module`` on ``device`` in ``dtype``; ``spec`` goes into the report as it is."""

    name: str
    module: nn.Module
    device: torch.device
    dtype: torch.dtype
    video: bool  # takes (B, 3, F, H, W) clips
    spec: dict[str, Any] = field(default_factory=dict)

    def check(self, media: str, size: int, frames: int | None) -> None:
        """Raise ModelLoadError when the model cannot run this protocol (before any data is read)."""
        if media == "video" and not self.video:
            raise ModelLoadError(f"{self.name} is an image autoencoder; it cannot run a video protocol")

    def encode(self, x: torch.Tensor) -> Any:
        raise NotImplementedError

    def decode(self, z: Any, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class HydraXModel(ReconModel):
    decode_steps: int | None = None

    def check(self, media: str, size: int, frames: int | None) -> None:
        c = self.module.config
        if size % c.patch_size:
            raise ModelLoadError(f"--size {size} is not a multiple of the model's patch size {c.patch_size}")
        if media == "video" and (frames - 1) % c.temporal_factor:
            k = (frames - 1) // c.temporal_factor
            raise ModelLoadError(
                f"--frames {frames} is not 1 + k * {c.temporal_factor} (the model's temporal factor); "
                f"nearest: {1 + k * c.temporal_factor}, {1 + (k + 1) * c.temporal_factor}"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.encode(x.to(self.dtype))  # (B, C, S, h, w), the posterior mean

    def decode(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        kwargs = {} if self.decode_steps is None else {"steps": self.decode_steps}
        y = self.module.decode(z, video=x.ndim == 5, **kwargs)
        return y.float().clamp(-1, 1)


def load_hydra_x(
    source: TokenizerSource, device: torch.device, dtype: torch.dtype, decode_steps: int | None = None
) -> HydraXModel:
    """HYDRA-X from a ``TokenizerSource`` (checkpoint folder / Hub id, or preset + seed: random weights)."""
    from hydra_x.hub import WEIGHTS_NAME, resolve_file

    module = load_tokenizer(source, device, dtype)
    if decode_steps is not None and "steps" not in inspect.signature(module.decode).parameters:
        raise ModelLoadError("--decode-steps was given but this HYDRA-X decoder takes no sampling steps")
    info: dict[str, Any] = {"type": "hydra-x", "config": source.config.to_dict(), "decode_steps": decode_steps}
    if source.checkpoint:
        weights = resolve_file(source.checkpoint, WEIGHTS_NAME)  # local, or the Hub file just cached by loading
        info.update(checkpoint=source.checkpoint, weights_file=str(weights), sha256=file_sha256(weights))
        name = f"HYDRA-X {Path(source.checkpoint).name or source.checkpoint}"
    else:
        info.update(preset=source.preset, seed=source.seed, random_weights=True)
        name = f"HYDRA-X {source.preset} (random, seed {source.seed})"
    model = HydraXModel(name, module, device, dtype, video=True, spec=info)
    model.decode_steps = decode_steps
    return model


# ---------------------------------------------------------------------------- diffusers


class DiffusersModel(ReconModel):
    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(2) if self.video and x.ndim == 4 else x  # images as one-frame clips

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module.encode(self._clip(x).to(self.dtype))
        out = out[0] if isinstance(out, tuple) else out
        return out.latent_dist.mode() if hasattr(out, "latent_dist") else out.latent

    def decode(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.module.decode(z)
        y = out[0] if isinstance(out, tuple) else out.sample
        if self.video and x.ndim == 4:
            y = y[:, :, 0]
        if y.shape != x.shape:
            raise ModelLoadError(
                f"{self.name} returned {tuple(y.shape)} for an input of {tuple(x.shape)}: the size (or frame "
                "count) does not fit the model's compression factors"
            )
        return y.float().clamp(-1, 1)


def _diffusers_config(source: str, subfolder: str | None) -> tuple[dict, str | None]:
    """The model's config.json (a folder, or a pipeline's ``vae/`` subfolder) and the subfolder used."""
    from hydra_x.hub import resolve_file

    tries = [subfolder] if subfolder else [None, "vae"]
    for sub in tries:
        name = f"{sub}/config.json" if sub else "config.json"
        try:
            path = resolve_file(source, name, optional=True)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot load diffusers model {source}: {err}") from err
        if path is not None:
            return json.loads(Path(path).read_text()), sub
    where = " or ".join(f"{s}/config.json" if s else "config.json" for s in tries)
    raise ModelLoadError(f"diffusers model {source} has no {where}")


def load_diffusers(
    source: str, device: torch.device, dtype: torch.dtype, subfolder: str | None = None
) -> DiffusersModel:
    """The class named in the config's ``_class_name``, via ``from_pretrained`` (folder or Hub repo)."""
    try:
        import diffusers
    except ImportError as err:
        raise ModelLoadError(
            "--model diffusers:... needs the diffusers package: pip install 'hydra-x[peers]' (or diffusers>=0.35)"
        ) from err
    config, sub = _diffusers_config(source, subfolder)
    cls_name = config.get("_class_name")
    cls = getattr(diffusers, cls_name, None) if isinstance(cls_name, str) else None
    if cls is None or not (isinstance(cls, type) and issubclass(cls, diffusers.ModelMixin)):
        raise ModelLoadError(
            f"diffusers model {source}: _class_name {cls_name!r} is not a model class of diffusers "
            f"{diffusers.__version__} (expected an autoencoder such as AutoencoderKL or AutoencoderKLWan)"
        )
    if not (hasattr(cls, "encode") and hasattr(cls, "decode")):
        raise ModelLoadError(f"diffusers model {source}: {cls_name} is not an autoencoder (no encode / decode)")
    try:
        module = cls.from_pretrained(source, subfolder=sub, torch_dtype=dtype)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as err:
        raise ModelLoadError(f"cannot load {cls_name} from {source}: {' '.join(str(err).split())[:400]}") from err
    module = module.to(device).eval().requires_grad_(False)
    video = cls_name in VIDEO_VAES or any(isinstance(m, nn.Conv3d) for m in module.modules())
    info: dict[str, Any] = {
        "type": "diffusers",
        "class": cls_name,
        "source": source,
        "subfolder": sub,
        "diffusers": diffusers.__version__,
        "config": {k: v for k, v in config.items() if not k.startswith("_")},
    }
    local = Path(source) / (sub or "")
    weights = sorted(local.glob("*.safetensors")) if local.is_dir() else []
    if weights:
        info["sha256"] = {w.name: file_sha256(w) for w in weights}
    return DiffusersModel(f"{cls_name} ({source})", module, device, dtype, video=video, spec=info)
