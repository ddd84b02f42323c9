"""Where and in what precision a model runs, from a command's ``--device`` / ``--dtype`` words."""

from __future__ import annotations

import torch

from hydra_x.errors import InputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """auto: CUDA if available, else CPU; dtype auto: bfloat16 on CUDA, float32 on CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was given but CUDA is not available (use --device cpu or auto)")
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)} or auto, got {dtype!r}")
    return torch.device(device), DTYPES[dtype]
