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

Image size limit, one rule: an image of more than :func:`max_image_pixels` pixels (width x height) is refused
with a MediaError that names its size, the limit and how to raise it. The limit is 178,956,970 pixels by
default (what Pillow itself refuses by default, e.g. 13,377 x 13,377; 2.1 GB as a float32 tensor), and is
set with ``hydra-x ... --max-image-pixels N``, the environment variable ``HYDRA_X_MAX_IMAGE_PIXELS=N`` or
:func:`set_max_image_pixels` (0: no limit). Below it Pillow's own check stays silent (its
DecompressionBombWarning starts at half that size); see :func:`open_image`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError, features

from hydra_x.errors import InputError

# What is read as an image: every extension Pillow registers for the formats below (JPEG's .jpe / .jfif, PNG's
# .apng, AVIF's .avifs included), whether or not this Pillow can decode AVIF: a file it cannot read then gets
# an error that says so, instead of being taken for a video or silently left out of a folder.
AVIF_EXTENSIONS = frozenset({".avif", ".avifs"})
IMAGE_EXTENSIONS = frozenset(
    {".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".gif"} | AVIF_EXTENSIONS
)
# Extensions write_image accepts, and the Pillow format each one selects.
IMAGE_WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
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


def _signed_levels() -> np.ndarray:
    """The 256 float32 values of unit_to_signed for 8-bit levels v (v / 255 in float64, then float32 maths)."""
    unit = torch.from_numpy((np.arange(256) / 255.0).astype(np.float32))
    return (unit * 2 - 1).clamp_(-1, 1).numpy()


_LEVELS = _signed_levels()


def levels_to_signed(v: np.ndarray) -> torch.Tensor:
    """(H, W, 3) or (H, W) uint8 -> (3, H, W) float32 in [-1, 1], equal to unit_to_signed(v / 255).

    A table lookup straight into the channels-first result: 5 bytes a value at the peak instead of the ~30 of
    the float64 route, which is what a very large photograph needs.
    """
    planes = np.ascontiguousarray(v.transpose(2, 0, 1) if v.ndim == 3 else v[None])  # 1 byte a value
    out = torch.from_numpy(_LEVELS[planes])  # a new array laid out as the index: C-contiguous (C, H, W)
    return out if out.shape[0] == 3 else out.expand(3, -1, -1).contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (3, F, H, W) in [-1, 1] (clamped; NaN -> 0) -> uint8 (H, W, 3) or (F, H, W, 3)."""
    x = torch.nan_to_num(x.detach().float().cpu(), nan=0.0)  # a new tensor: the rest is done in place on it
    v = x.clamp_(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8)
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
        return levels_to_signed(np.asarray(im.convert("L")))
    return levels_to_signed(np.asarray(im if mode == "RGB" else im.convert("RGB")))


# ---------------------------------------------------------------------------- the image size limit

PIXEL_LIMIT_ENV = "HYDRA_X_MAX_IMAGE_PIXELS"
# Pillow's own refusal threshold at its defaults (2 x PIL.Image.MAX_IMAGE_PIXELS = 2 x 89,478,485): nothing
# Pillow read before is refused, and nothing it refused is read without asking.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970
_UNSET = object()
_max_pixels: object = _UNSET  # set_max_image_pixels's value (an int, or None for no limit)
_probe_lock = threading.Lock()


def set_max_image_pixels(limit: int | None) -> None:
    """Read images of up to ``limit`` pixels (width x height) in this process; 0 or None: no limit.

    Takes precedence over the environment variable ``HYDRA_X_MAX_IMAGE_PIXELS``.
    """
    global _max_pixels
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InputError(f"the image pixel limit must be a whole number >= 0 (0: no limit), got {limit!r}")
    _max_pixels = limit or None


@contextlib.contextmanager
def image_pixel_limit(limit: int | None) -> Iterator[None]:
    """set_max_image_pixels for a block (a command's run), then the previous limit and Pillow's setting back."""
    global _max_pixels
    saved, saved_pillow = _max_pixels, Image.MAX_IMAGE_PIXELS
    set_max_image_pixels(limit)
    try:
        yield
    finally:
        _max_pixels, Image.MAX_IMAGE_PIXELS = saved, saved_pillow


def max_image_pixels() -> int | None:
    """The limit in force: set_max_image_pixels's, else ``$HYDRA_X_MAX_IMAGE_PIXELS``, else the default; None: none."""
    return _limit()[0]


def _limit() -> tuple[int | None, bool]:
    """(the limit in force, whether the user chose it) -- a chosen one may loosen Pillow's, see _loosen_pillow."""
    if _max_pixels is not _UNSET:
        return _max_pixels, True  # type: ignore[return-value]
    raw = os.environ.get(PIXEL_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS, False
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        value = -1
    if value < 0:
        raise InputError(f"{PIXEL_LIMIT_ENV}={raw!r} is not a number of pixels (a whole number; 0 for no limit)")
    return value or None, True


def _loosen_pillow(limit: int | None) -> None:
    """Raise Pillow's own limit when a limit the user chose is above it: Pillow must not refuse what it allows.

    Pillow refuses images over twice ``PIL.Image.MAX_IMAGE_PIXELS`` (a process-wide setting). It is only ever
    raised, and only for a limit the user set: with hydra-x's default (equal to Pillow's default refusal
    threshold), a Pillow limit someone lowered on purpose stays in force.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and (limit is None or 2 * current < limit):
        Image.MAX_IMAGE_PIXELS = None if limit is None else -(-limit // 2)


def _too_big(name: PathLike, size: tuple[int, int] | None, limit: int | None) -> MediaError:
    """The one-line refusal: the image's size, the limit, and how to raise it."""
    if size is None:
        what = "the image is too large"
    else:
        what = f"the image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels"
    if size is not None and (limit is None or size[0] * size[1] <= limit):  # Pillow's limit, set lower by someone
        pillow = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        return MediaError(
            name,
            f"{what}, over the limit Pillow was given in this process (twice PIL.Image.MAX_IMAGE_PIXELS = "
            f"{pillow:,}); setting hydra-x's limit (--max-image-pixels N, {PIXEL_LIMIT_ENV}=N) raises it",
        )
    return MediaError(
        name,
        f"{what}, over the limit of {limit:,} pixels (a guard against decompression bombs); if the file is "
        f"trusted, raise it with --max-image-pixels N (hydra-x commands), {PIXEL_LIMIT_ENV}=N (environment) or "
        "hydra_x.data.media.set_max_image_pixels(N) (Python); 0 means no limit",
    )


def _probe_size(source: PathLike | BinaryIO) -> tuple[int, int] | None:
    """(width, height) from the header with Pillow's check off: only to word the refusal of a huge image.

    Pillow's setting is global, hence the lock and the restore; nothing is decoded in between.
    """
    with _probe_lock:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            if hasattr(source, "seek"):
                source.seek(0)
            with Image.open(source) as im:
                return im.size
        except Exception:
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def avif_supported() -> bool:
    """Whether this Pillow decodes AVIF (its wheels do from 11.3; older Pillows have no AVIF plugin at all)."""
    return "avif" in features.modules and bool(features.check_module("avif"))


@contextlib.contextmanager
def open_image(source: PathLike | BinaryIO, name: PathLike) -> Iterator[Image.Image]:
    """Pillow's lazy open (the header only) under hydra-x's pixel limit; ``name`` is for errors.

    Raises MediaError for an image over the limit, an unknown format or a corrupt header. Inside, Pillow's
    DecompressionBombWarning is ignored (hydra-x's limit is the rule; ``warnings.catch_warnings`` is
    process-wide state, as Pillow's own documentation suggests using it). Errors raised by the body, e.g.
    while loading, are the caller's to word.
    """
    limit, chosen = _limit()
    if chosen:
        _loosen_pillow(limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(source)
        except Image.DecompressionBombError:
            raise _too_big(name, _probe_size(source), limit) from None
        except UnidentifiedImageError:
            if Path(name).suffix.lower() in AVIF_EXTENSIONS and not avif_supported():
                problem = (
                    f"an AVIF image, and this Pillow ({PIL.__version__}) cannot decode AVIF: install one built "
                    "with AVIF support (the PyPI wheels of Pillow >= 11.3 are)"
                )
            else:
                problem = "not a readable image (corrupt, or a format Pillow does not know)"
            raise MediaError(name, problem) from None
        except Exception as err:  # Pillow raises OSError, SyntaxError, EOFError, zlib.error ... for bad data
            raise MediaError(
                name, f"cannot decode the image, the file is truncated or corrupt ({decoder_reason(err)})"
            ) from err
        with im:
            if limit is not None and im.size[0] * im.size[1] > limit:
                raise _too_big(name, im.size, limit)
            yield im


# ---------------------------------------------------------------------------- images


def is_image_path(path: PathLike) -> bool:
    """Whether ``path`` is read as an image (by extension); anything else is tried as a video."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: PathLike) -> torch.Tensor:
    """An image file -> (3, H, W) float32 in [-1, 1]; the first frame of an animated / multi-page file.

    The whole file is decoded here (``Image.load``), so a truncated or corrupt file raises MediaError now,
    not later. Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left as it is (False by default).
    Images over :func:`max_image_pixels` are refused (MediaError) before anything is decoded.
    """
    path = check_file(path)
    return decode_image(path, path)


def decode_image(source: PathLike | BinaryIO, name: PathLike) -> torch.Tensor:
    """A file path or an open binary stream (e.g. a shard member) -> (3, H, W) in [-1, 1]; ``name`` is for errors."""
    with open_image(source, name) as im:
        try:
            im.load()
            # A copy, decoded; rotated / flipped as the EXIF orientation tag says (as viewers show it).
            decoded = ImageOps.exif_transpose(im)
        except Exception as err:
            raise MediaError(
                name, f"cannot decode the image, the file is truncated or corrupt ({decoder_reason(err)})"
            ) from err
    return image_to_tensor(decoded)


def read_image_size(source: PathLike | BinaryIO, name: PathLike | None = None) -> tuple[int, int]:
    """(H, W) of an image as read_image returns it (EXIF rotation applied), from its header only.

    The same rules as read_image: MediaError for an unreadable header or an image over the pixel limit.
    """
    name = source if name is None else name
    with open_image(source, name) as im:
        w, h = im.size
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception as err:
            raise MediaError(name, f"unreadable image header ({decoder_reason(err)})") from err
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)  # these orientations swap the axes


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
