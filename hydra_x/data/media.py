"""Images on disk <-> float32 tensors in [-1, 1], channels first; the errors and conversions videos share.

Images go through Pillow (videos through PyAV, in hydra_x.data.video). Every unreadable file raises
:class:`MediaError`, an ``InputError`` (a ``ValueError``) whose one-line message starts with the file's path and
names the problem, so a command line can print it as it is and a data loader can catch it and skip the sample.

Conventions:
- pixels are float32 in [-1, 1]: an 8-bit value ``v`` maps to ``v / 255 * 2 - 1`` and back with rounding, so
  8-bit PNG round trips are exact;
- images are (3, H, W), videos (3, F, H, W), single frames yielded by :func:`iter_video_frames` (3, H, W);
- transparent pixels are composited over white (what a viewer shows on a white page), embedded ICC
  profiles are ignored, EXIF orientation is applied;
- videos (hydra_x.data.video) follow the same conventions and errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from hydra_x.errors import InputError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
# Extensions write_image accepts, and the Pillow format each one selects.
IMAGE_WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

PathLike = str | os.PathLike


class MediaError(InputError):
    """A media file that cannot be read (or written); the message is ``"<path>: <problem>"`` on one line."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = Path(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever FFmpeg / Pillow put in it
        super().__init__(f"{self.path}: {self.problem}")


def check_file(path: PathLike) -> Path:
    """The path of an existing, non-empty regular file (the errors every reader shares)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "no such file")
    if path.is_dir():
        raise MediaError(path, "is a directory, not a file")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    return path


def decoder_reason(err: BaseException) -> str:
    """A short description of a decoder error, without the file name FFmpeg appends to it."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}" if not isinstance(err, av.FFmpegError) else text


# ---------------------------------------------------------------------------- pixel conversions


def unit_to_signed(x: np.ndarray) -> torch.Tensor:
    """(H, W, C) values in [0, 1] -> (C, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(2, 0, 1)
    return (t * 2 - 1).clamp_(-1, 1).contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (3, F, H, W) in [-1, 1] (clamped; NaN -> 0) -> uint8 (H, W, 3) or (F, H, W, 3)."""
    x = torch.nan_to_num(x.detach().float().cpu(), nan=0.0).clamp(-1, 1)
    v = ((x + 1) * 127.5).round().to(torch.uint8)
    v = v.permute(1, 2, 0) if v.ndim == 3 else v.permute(1, 2, 3, 0)
    return np.ascontiguousarray(v.numpy())


def image_to_tensor(im: Image.Image) -> torch.Tensor:
    """A decoded Pillow image of any common mode -> (3, H, W) float32 in [-1, 1].

    - 8-bit modes (1, L, P, RGB, YCbCr, CMYK, ...) scale by 255; CMYK uses Pillow's plain conversion (no ICC).
    - 16-bit grayscale (I;16, I;16L, I;16B, I;16N) scales by 65535; mode I (32-bit integers, which is how
      Pillow may hold 16-bit PNG / TIFF) is read as 16-bit too: clipped to [0, 65535], scaled by 65535.
    - F (32-bit float) is taken to be in [0, 1] and clipped.
    - 16-bit RGB(A) files reach us as 8-bit RGB(A): Pillow has no 16-bit colour mode.
    - Alpha (LA, La, PA, RGBA, RGBa, P or RGB with a transparency key) is composited over white.
    - Grayscale is replicated to three channels.
    """
    mode = im.mode
    if mode.startswith("I;16"):
        gray = np.asarray(im).astype(np.float64) / 65535.0  # np.asarray honours the byte order of I;16B
        return unit_to_signed(np.repeat(gray[..., None], 3, axis=2))
    if mode == "I":
        gray = np.clip(np.asarray(im).astype(np.float64), 0, 65535) / 65535.0
        return unit_to_signed(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        gray = np.clip(np.asarray(im).astype(np.float64), 0.0, 1.0)
        return unit_to_signed(np.repeat(gray[..., None], 3, axis=2))
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA")).astype(np.float64) / 255.0  # La is premultiplied: un-premultiply
        gray = la[..., :1] * la[..., 1:] + (1.0 - la[..., 1:])  # over white
        return unit_to_signed(np.repeat(gray, 3, axis=2))
    # Alpha channels, and the transparency key a P / L / RGB image may carry in its info.
    if mode in ("RGBA", "RGBa", "PA") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA")).astype(np.float64) / 255.0
        alpha = rgba[..., 3:]
        return unit_to_signed(rgba[..., :3] * alpha + (1.0 - alpha))  # over white
    if mode in ("1", "L"):
        gray = np.asarray(im.convert("L")).astype(np.float64) / 255.0
        return unit_to_signed(np.repeat(gray[..., None], 3, axis=2))
    rgb = np.asarray(im.convert("RGB")).astype(np.float64) / 255.0
    return unit_to_signed(rgb)


# ---------------------------------------------------------------------------- images


def is_image_path(path: PathLike) -> bool:
    """Whether ``path`` is read as an image (by extension); anything else is tried as a video."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: PathLike) -> torch.Tensor:
    """An image file -> (3, H, W) float32 in [-1, 1]; the first frame of an animated / multi-page file.

    The whole file is decoded here (``Image.load``), so a truncated or corrupt file raises MediaError now,
    not later. Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left as it is (False by default).
    """
    path = check_file(path)
    return decode_image(path, path)


def decode_image(source: PathLike | BinaryIO, name: PathLike) -> torch.Tensor:
    """A file path or an open binary stream (e.g. a shard member) -> (3, H, W) in [-1, 1]; ``name`` is for errors."""
    try:
        with Image.open(source) as im:
            im.load()
            # A copy, decoded; rotated / flipped as the EXIF orientation tag says (as viewers show it).
            decoded = ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise MediaError(name, "not a readable image (corrupt, or a format Pillow does not know)") from None
    except Exception as err:  # Pillow raises OSError, SyntaxError, EOFError, zlib.error ... for bad data
        raise MediaError(
            name, f"cannot decode the image, the file is truncated or corrupt ({decoder_reason(err)})"
        ) from err
    return image_to_tensor(decoded)


def write_image(path: PathLike, x: torch.Tensor, *, quality: int = 95) -> Path:
    """Write a (3, H, W) tensor in [-1, 1] (clamped) as 8-bit RGB; the format follows the extension.

    PNG / BMP / TIFF are lossless; JPEG (4:4:4, no chroma subsampling) and WebP use ``quality``.
    """
    path = Path(path)
    fmt = IMAGE_WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MediaError(path, f"cannot write an image with this extension; use one of {sorted(IMAGE_WRITE_FORMATS)}")
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"write_image takes a (3, H, W) tensor, got shape {tuple(x.shape)}")
    options = {"JPEG": {"quality": quality, "subsampling": 0}, "WEBP": {"quality": quality}}.get(fmt, {})
    try:
        Image.fromarray(to_uint8(x)).save(path, format=fmt, **options)
    except OSError as err:
        raise MediaError(path, f"cannot write ({err.strerror or err})") from err
    return path


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (C, H, W) or (C, F, H, W) so that the shorter side is ``size`` (bicubic with antialiasing).

    The aspect ratio is kept (longer side rounded); values are clamped back to [-1, 1] because bicubic
    overshoots at edges.
    """
    if size < 1:
        raise ValueError(f"the short side must be a positive number of pixels, got {size}")
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new = (size, max(1, round(w * scale))) if h <= w else (max(1, round(h * scale)), size)
    if new == (h, w):
        return x
    frames = x.unsqueeze(0) if x.ndim == 3 else x.transpose(0, 1)  # (N, C, H, W)
    out = F.interpolate(frames.float(), size=new, mode="bicubic", antialias=True, align_corners=False)
    out = out.clamp_(-1, 1).to(x.dtype)
    return out[0] if x.ndim == 3 else out.transpose(0, 1).contiguous()
