"""Using a tokenizer on real files: which weights, pixels <-> latents for images and long videos, the latent file.

Everything here is a library function that the CLI, the evaluation and the demo call alike; problems the
caller can fix raise :class:`~hydra_x.errors.InputError` with a one-line message.

- ``TokenizerSource`` / ``resolve_source`` / ``load_tokenizer``: a checkpoint (folder or Hub id) or a preset with
  random weights, resolved to its config before any weight is read.
- ``encode_pixels`` / ``decode_latent``: one image or one chunk of video frames, padded to the patch grid (edge
  replicate) and to a valid clip length (last frame repeated), cropped and trimmed back after decoding.
- ``reconstruct_image`` / ``reconstruct_chunks``: encode and decode back, an image at once or a video chunk by
  chunk (what ``hydra-x reconstruct`` and the web app's reconstruction tab both run).
- ``chunked``: frames -> chunks of a fixed length, so a video of any length streams through in constant memory.
- ``write_latent_file`` / ``read_latent_file``: a latent with what is needed to decode it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from hydra_x.errors import InputError
from hydra_x.tokenizer.config import TokenizerConfig, tokenizer_config
from hydra_x.tokenizer.model import HydraXTokenizer

LATENT_KEY = "latent"
LATENT_FORMAT = "hydra-x-latent"
LATENT_METADATA = ("kind", "height", "width", "frames", "clip_frames", "checkpoint", "preset", "seed")
DEFAULT_CLIP_FRAMES = 17  # frames per video chunk: one clip of the tokenizer's default 1 + 4 * 4


# ---------------------------------------------------------------------------- which weights


@dataclass
class TokenizerSource:
    """Which weights to use: a checkpoint (folder or Hub id), or a preset with random weights from ``seed``."""

    config: TokenizerConfig
    checkpoint: str | None
    preset: str | None
    seed: int

    def describe(self) -> str:
        return f"checkpoint {self.checkpoint}" if self.checkpoint else f"preset {self.preset} (random weights)"


def resolve_source(ckpt: str | None, preset: str | None, seed: int | None, default_preset: str) -> TokenizerSource:
    """The model's config without loading weights, so option errors come before any slow work."""
    if ckpt and preset:
        raise InputError("give either --ckpt or --preset, not both (a checkpoint's config.json fixes its architecture)")
    seed = 0 if seed is None else seed
    if ckpt:
        from hydra_x.hub import read_config

        local = Path(ckpt)
        if (local / "export" / "config.json").is_file():  # a training run folder: the weights it exported
            local = local / "export"
            ckpt = str(local)
        elif (local / "checkpoints").is_dir():
            raise InputError(f"{ckpt} is a training run without an export/ yet (it exports when it finishes)")
        try:
            config = TokenizerConfig.from_dict(read_config(ckpt, "hydra-x-tokenizer"))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise InputError(f"cannot load the checkpoint {ckpt}: {err}") from err
        return TokenizerSource(config, str(local.resolve()) if local.is_dir() else ckpt, None, seed)
    name = preset or default_preset
    try:
        return TokenizerSource(tokenizer_config(name), None, name, seed)
    except ValueError as err:
        raise InputError(str(err)) from err


def load_tokenizer(source: TokenizerSource, device: torch.device, dtype: torch.dtype) -> HydraXTokenizer:
    """The tokenizer in eval mode (random weights when ``source`` is a preset: callers say so to the user)."""
    if source.checkpoint is None:
        return HydraXTokenizer.from_preset(source.preset, seed=source.seed, device=device, dtype=dtype).eval()
    from safetensors import SafetensorError

    try:
        model = HydraXTokenizer.from_pretrained(source.checkpoint, device=device, dtype=dtype)
    except (OSError, ValueError, TypeError, KeyError, SafetensorError) as err:
        raise InputError(f"cannot load the checkpoint {source.checkpoint}: {err}") from err
    return model.eval()


# ---------------------------------------------------------------------------- pixels <-> latents


def check_clip_frames(clip_frames: int, factor: int) -> None:
    """A chunk must be a valid clip length, 1 + k * temporal_factor."""
    from hydra_x.tokenizer.checks import nearest_frame_counts

    if clip_frames < 1 or (clip_frames - 1) % factor:
        raise InputError(
            f"--clip-frames {clip_frames} is not 1 + k * {factor} (the model's temporal factor); "
            f"nearest valid values: {nearest_frame_counts(clip_frames, factor)}"
        )


def padded_size(height: int, width: int, patch: int) -> tuple[int, int]:
    return math.ceil(height / patch) * patch, math.ceil(width / patch) * patch


def pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad the last two dims of (N, C, H, W) at the bottom / right by repeating the edge pixels."""
    ph, pw = height - x.shape[-2], width - x.shape[-1]
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def pad_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(3, n, H, W) -> (3, frames, H, W) by repeating the last frame."""
    missing = frames - x.shape[1]
    return torch.cat((x, x[:, -1:].expand(-1, missing, -1, -1)), dim=1) if missing > 0 else x


@torch.inference_mode()
def encode_pixels(model: HydraXTokenizer, x: torch.Tensor, clip_frames: int | None) -> torch.Tensor:
    """An image (3, H, W) or a chunk of frames (3, n, H, W) -> latent (1, C, S, h, w) on the model's device.

    Images and chunks are padded (edge replicate) to multiples of the patch size; chunks are padded to
    ``clip_frames`` frames by repeating their last frame. The posterior mean: deterministic.
    """
    p = model.config.patch_size
    hp, wp = padded_size(x.shape[-2], x.shape[-1], p)
    device, dtype = model.latent_mean.device, model.latent_mean.dtype
    if x.ndim == 3:
        batch = pad_to(x.unsqueeze(0), hp, wp)  # (1, 3, Hp, Wp)
    else:
        batch = pad_to(pad_frames(x, clip_frames), hp, wp).unsqueeze(0)  # (1, 3, clip, Hp, Wp)
    return model.encode(batch.to(device=device, dtype=dtype))


@torch.inference_mode()
def decode_latent(
    model: HydraXTokenizer, z: torch.Tensor, frames: int | None, height: int, width: int, **sampler
) -> torch.Tensor:
    """Latent (1, C, S, h, w) -> float32 CPU pixels clamped to [-1, 1], cropped to (height, width).

    ``frames=None``: an image (3, H, W). Otherwise video frames (3, frames, H, W), the chunk's padding frames
    dropped (a one-frame chunk, which the model decodes as an image, becomes one frame). ``sampler``: the
    flow decoder's ``steps`` and ``generator`` (see ``flow_sampler``).
    """
    device, dtype = model.latent_mean.device, model.latent_mean.dtype
    x = model.decode(z.to(device=device, dtype=dtype), **sampler).float().clamp(-1, 1)[0]  # (3, H, W) or (3, F, H, W)
    if frames is None:
        return x[:, :height, :width].cpu().contiguous()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return x[:, :frames, :height, :width].cpu().contiguous()


def reconstruct_image(model: HydraXTokenizer, x: torch.Tensor, **sampler) -> torch.Tensor:
    """An image (3, H, W) in [-1, 1] -> its reconstruction (3, H, W), float32 on the CPU, clamped to [-1, 1]."""
    height, width = x.shape[-2:]
    return decode_latent(model, encode_pixels(model, x, None), None, height, width, **sampler)


def reconstruct_chunks(
    model: HydraXTokenizer, frames: Iterable[torch.Tensor], clip_frames: int, height: int, width: int, **sampler
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(3, H, W) frames -> (original, reconstruction) pairs of (3, n, H, W) chunks of ``clip_frames`` frames.

    Each chunk is tokenized as an independent clip (the last, shorter one padded and trimmed back), so a video
    of any length streams through in constant memory; ``sampler`` as for ``decode_latent``.
    """
    for chunk in chunked(frames, clip_frames):
        z = encode_pixels(model, chunk, clip_frames)
        yield chunk, decode_latent(model, z, chunk.shape[1], height, width, **sampler)


def flow_sampler(steps: int | None, source: TokenizerSource) -> dict:
    """decode()'s sampling options: for a flow decoder, the steps and a generator seeded by the source's seed.

    One generator for a whole video: chunk i draws the i-th noise, so decode repeats reconstruct exactly.
    """
    if source.config.decoder != "flow":
        if steps is not None:
            raise InputError(
                f"--steps is for flow-decoder checkpoints; {source.describe()} has a {source.config.decoder} "
                "decoder (one deterministic pass)"
            )
        return {}
    if steps is not None and steps < 1:
        raise InputError(f"--steps must be at least 1, got {steps}")
    return {"steps": steps, "generator": torch.Generator().manual_seed(source.seed)}


def chunked(frames: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """(3, H, W) frames -> (3, n, H, W) chunks of ``size`` frames (the last one may be shorter)."""
    buffer: list[torch.Tensor] = []
    for frame in frames:
        buffer.append(frame)
        if len(buffer) == size:
            yield torch.stack(buffer, dim=1)
            buffer = []
    if buffer:
        yield torch.stack(buffer, dim=1)


def n_chunks(frames: int | None, clip_frames: int) -> int | None:
    return math.ceil(frames / clip_frames) if frames else None


# ---------------------------------------------------------------------------- the latent file


def write_latent_file(path: Path, latent: torch.Tensor, metadata: dict[str, str]) -> None:
    """``latent`` (n, C, S, h, w) and string ``metadata`` (at least ``LATENT_METADATA``) as safetensors."""
    from safetensors.torch import save_file

    from hydra_x._version import __version__

    missing = [k for k in LATENT_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"latent metadata lacks {missing}")
    meta = {"format": LATENT_FORMAT, "hydra_x_version": __version__, **metadata}
    save_file({LATENT_KEY: latent.contiguous()}, str(path), metadata=meta)


def read_latent_file(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    """The latent tensor and metadata written by ``write_latent_file`` (``hydra-x encode``), checked."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = f.keys()  # a list (safe_open has no __contains__)
            if LATENT_KEY not in names:
                raise InputError(f"{path}: no '{LATENT_KEY}' tensor; not a file written by 'hydra-x encode'")
            latent = f.get_tensor(LATENT_KEY)
    except SafetensorError as err:
        raise InputError(f"{path}: not a readable safetensors file ({err})") from err
    missing = [k for k in LATENT_METADATA if k not in meta]
    if meta.get("format") != LATENT_FORMAT or missing:
        raise InputError(f"{path}: not a latent file written by 'hydra-x encode' (missing metadata {missing})")
    if latent.ndim != 5:
        raise InputError(f"{path}: the latent must be (n, C, S, h, w), got {tuple(latent.shape)}")
    return latent, meta
