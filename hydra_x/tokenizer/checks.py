"""Input validation for the tokenizer's public API: every bad input is a ValueError that names the problem."""

from __future__ import annotations

import math

import torch

from hydra_x.tokenizer.config import TokenizerConfig


def nearest_multiples(value: int, step: int) -> str:
    below = (value // step) * step
    above = below + step
    return f"{below} or {above}" if below > 0 else f"{above}"


def nearest_frame_counts(frames: int, factor: int) -> str:
    if frames < 1:
        return "1"
    below = 1 + ((frames - 1) // factor) * factor
    return f"{below} or {below + factor}"


def check_frames(frames: int, factor: int) -> None:
    if frames < 1 or (frames - 1) % factor:
        raise ValueError(
            f"a clip must have 1 + T frames with T divisible by the temporal factor {factor}; got {frames} "
            f"frames; nearest valid frame counts: {nearest_frame_counts(frames, factor)}"
        )


def check_spatial(height: int, width: int, patch: int) -> None:
    for name, size in (("height", height), ("width", width)):
        if size < patch or size % patch:
            raise ValueError(
                f"{name} {size} is not divisible by the patch size {patch}; "
                f"nearest valid {name}s: {nearest_multiples(size, patch)}"
            )


def check_values(x: torch.Tensor, name: str, expected_range: float | None) -> None:
    """NaN / Inf, and values far outside [-range, range] (one device sync for both checks)."""
    lo, hi = torch.aminmax(x.detach().float())
    lo, hi = lo.item(), hi.item()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = "NaN" if torch.isnan(x).any() else "Inf"
        raise ValueError(f"{name} contains {bad} values")
    if expected_range is not None and (lo < -expected_range or hi > expected_range):
        raise ValueError(
            f"{name} values must lie in [-1, 1] (up to +-{expected_range:g} is accepted); got min {lo:.3g}, "
            f"max {hi:.3g}" + (" (uint8-range pixels? use x / 127.5 - 1)" if hi > 2 else "")
        )


def check_pixels(x: object, config: TokenizerConfig, values: bool = True) -> tuple[torch.Tensor, bool]:
    """Return pixels as (B, C, F, H, W) and whether the input was an image (B, C, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"pixels must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"pixels must be a floating-point tensor in [-1, 1], got dtype {x.dtype}")
    if x.ndim not in (4, 5):
        raise ValueError(
            f"pixels must have shape (B, C, H, W) for images or (B, C, 1 + T, H, W) for clips; got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"empty batch: pixels have shape {tuple(x.shape)}")
    if x.shape[1] != config.in_channels:
        raise ValueError(
            f"pixels must have {config.in_channels} channels in dimension 1; got {x.shape[1]} "
            f"(shape {tuple(x.shape)}; channels-last input? use x.permute)"
        )
    is_image = x.ndim == 4
    if is_image:
        x = x.unsqueeze(2)
    check_frames(x.shape[2], config.temporal_factor)
    check_spatial(x.shape[-2], x.shape[-1], config.patch_size)
    if values:
        check_values(x, "pixels", expected_range=1.5)
    return x, is_image


def check_latent(z: object, config: TokenizerConfig, values: bool = True) -> torch.Tensor:
    """Return a latent as (B, C, S, h, w); a 4D (B, C, h, w) latent is one step."""
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"latent must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise ValueError(f"latent must be a floating-point tensor, got dtype {z.dtype}")
    if z.ndim == 4:
        z = z.unsqueeze(2)
    if z.ndim != 5:
        raise ValueError(f"latent must have shape (B, C, S, h, w); got {tuple(z.shape)}")
    if z.shape[0] == 0:
        raise ValueError(f"empty batch: latent has shape {tuple(z.shape)}")
    if z.shape[1] != config.latent_channels:
        raise ValueError(
            f"latent must have {config.latent_channels} channels in dimension 1; got shape {tuple(z.shape)}"
        )
    if values:
        check_values(z, "latent", expected_range=None)
    return z
