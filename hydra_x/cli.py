"""The ``hydra-x`` command: parameter counts, and reconstruct / encode / decode images and videos.

    hydra-x info [--preset so400m | --ckpt DIR]
    hydra-x reconstruct IN OUT [model options] [--clip-frames 17] [--max-frames N] [--resize SHORT_SIDE] [--steps N]
    hydra-x encode IN OUT.safetensors [same options]
    hydra-x decode IN.safetensors OUT [model options] [--steps N]

A checkpoint with a flow-matching decoder samples its pixels: ``--steps`` Euler steps (default: its config's
flow_steps) from noise seeded by ``--seed``, so the same seed gives the same pixels.

Errors a user can fix (bad or unreadable files, bad options, unknown preset, unloadable checkpoint) print one
line ``hydra-x: error: ...`` on stderr and exit with 2; anything else is a bug: one line and exit 1, or the
full traceback with ``HYDRA_X_DEBUG=1``. Results go to stdout; warnings, notes and the progress bar to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import hydra_x
from hydra_x.data.media import (
    DEFAULT_CRF,
    IMAGE_WRITE_FORMATS,
    VIDEO_WRITE_EXTENSIONS,
    MediaError,
    VideoWriter,
    is_image_path,
    iter_video_frames,
    read_image,
    resize_short_side,
    video_info,
    write_image,
)
from hydra_x.eval.metrics import SSIM_RADIUS, video_psnr, video_ssim
from hydra_x.tokenizer import HydraXTokenizer, TokenizerConfig

PROG = "hydra-x"
LATENT_KEY = "latent"
LATENT_FORMAT = "hydra-x-latent"
DEFAULT_PRESET = "tiny"  # model commands: small enough to run anywhere (random weights without --ckpt)
INFO_PRESET = "so400m"  # info: the paper's size
IMAGE_OUTPUTS = tuple(IMAGE_WRITE_FORMATS)
DEBUG_ENV = "HYDRA_X_DEBUG"


class CliError(Exception):
    """A problem the user can fix: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one ``hydra-x: error:`` line like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{message} (see '{self.prog} --help')")


def _note(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _size(height: int, width: int) -> str:
    return f"{width}x{height}"  # the usual width x height notation


# ---------------------------------------------------------------------------- the model


@dataclass
class ModelSpec:
    """Which weights to use: a checkpoint (folder or Hub id), or a preset with random weights from ``seed``."""

    config: TokenizerConfig
    checkpoint: str | None
    preset: str | None
    seed: int

    def describe(self) -> str:
        return f"checkpoint {self.checkpoint}" if self.checkpoint else f"preset {self.preset} (random weights)"


def resolve_spec(ckpt: str | None, preset: str | None, seed: int | None, default_preset: str) -> ModelSpec:
    """The model's config without loading weights, so option errors come before any slow work."""
    if ckpt and preset:
        raise CliError("give either --ckpt or --preset, not both (a checkpoint's config.json fixes its architecture)")
    seed = 0 if seed is None else seed
    if ckpt:
        from hydra_x.hub import read_config

        local = Path(ckpt)
        try:
            config = TokenizerConfig.from_dict(read_config(ckpt, "hydra-x-tokenizer"))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise CliError(f"cannot load the checkpoint {ckpt}: {err}") from err
        return ModelSpec(config, str(local.resolve()) if local.is_dir() else ckpt, None, seed)
    from hydra_x.configs.tokenizer import tokenizer_config

    name = preset or default_preset
    try:
        return ModelSpec(tokenizer_config(name), None, name, seed)
    except ValueError as err:
        raise CliError(str(err)) from err


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """auto: CUDA if available, else CPU; dtype auto: bfloat16 on CUDA, float32 on CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda was given but CUDA is not available (use --device cpu or auto)")
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return torch.device(device), {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def load_model(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> HydraXTokenizer:
    """The tokenizer in eval mode; warns on stderr when it has random weights."""
    if spec.checkpoint is None:
        _warn(
            f"no trained weights given (--ckpt); using a randomly initialised '{spec.preset}' tokenizer "
            f"(seed {spec.seed}), so the output is noise"
        )
        return HydraXTokenizer.from_preset(spec.preset, seed=spec.seed, device=device, dtype=dtype).eval()
    from safetensors import SafetensorError

    try:
        model = HydraXTokenizer.from_pretrained(spec.checkpoint, device=device, dtype=dtype)
    except (OSError, ValueError, TypeError, KeyError, SafetensorError) as err:
        raise CliError(f"cannot load the checkpoint {spec.checkpoint}: {err}") from err
    return model.eval()


# ---------------------------------------------------------------------------- pixels <-> latents


def check_clip_frames(clip_frames: int, factor: int) -> None:
    """A chunk must be a valid clip length, 1 + k * temporal_factor."""
    from hydra_x.tokenizer.checks import nearest_frame_counts

    if clip_frames < 1 or (clip_frames - 1) % factor:
        raise CliError(
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


def flow_sampler(steps: int | None, spec: ModelSpec) -> dict:
    """decode()'s sampling options: for a flow decoder, the steps and a generator seeded by the spec's seed.

    One generator for a whole video: chunk i draws the i-th noise, so decode repeats reconstruct exactly.
    """
    if spec.config.decoder != "flow":
        if steps is not None:
            raise CliError(
                f"--steps is for flow-decoder checkpoints; {spec.describe()} has a {spec.config.decoder} "
                "decoder (one deterministic pass)"
            )
        return {}
    if steps is not None and steps < 1:
        raise CliError(f"--steps must be at least 1, got {steps}")
    return {"steps": steps, "generator": torch.Generator().manual_seed(spec.seed)}


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


# ---------------------------------------------------------------------------- inputs and outputs


def media_kind(path: Path) -> str:
    return "image" if is_image_path(path) else "video"


def check_output(path: Path, kind: str, what: str = "input") -> None:
    """The output's extension must suit the kind of result, and its folder must exist."""
    suffix = path.suffix.lower()
    if kind == "image" and suffix not in IMAGE_OUTPUTS:
        raise CliError(
            f"an image {what} needs an image output ({', '.join(IMAGE_OUTPUTS)}); got {path}"
            + (" (.gif is written as an animated video)" if suffix == ".gif" else "")
        )
    if kind == "video" and suffix not in VIDEO_WRITE_EXTENSIONS:
        raise CliError(f"a video {what} needs a video output ({', '.join(VIDEO_WRITE_EXTENSIONS)}); got {path}")
    if not path.parent.is_dir():
        raise CliError(f"cannot write {path}: the folder {path.parent} does not exist")


@dataclass
class ImageInput:
    pixels: torch.Tensor  # (3, H, W) after --resize


@dataclass
class VideoInput:
    path: Path
    fps: float
    frames_hint: int | None  # from the header (and --max-frames): for the progress bar only
    height: int
    width: int
    max_frames: int | None
    resize: int | None

    def frames(self) -> Iterator[torch.Tensor]:
        """(3, H, W) frames after --resize, decoded lazily."""
        for frame in iter_video_frames(self.path, max_frames=self.max_frames):
            yield resize_short_side(frame, self.resize) if self.resize else frame


def open_input(path: Path, resize: int | None, max_frames: int | None) -> ImageInput | VideoInput:
    """Read an image now, or probe a video (its frames are decoded while they are processed)."""
    if resize is not None and resize < 1:
        raise CliError(f"--resize must be a positive number of pixels, got {resize}")
    if max_frames is not None and max_frames < 1:
        raise CliError(f"--max-frames must be at least 1, got {max_frames}")
    if media_kind(path) == "image":
        x = read_image(path)
        return ImageInput(resize_short_side(x, resize) if resize else x)
    info = video_info(path)
    height, width = info.height, info.width
    if resize:  # the size resize_short_side gives, without decoding a frame
        height, width = resize_short_side(torch.zeros(1, height, width), resize).shape[-2:]
    hint = min(info.frames, max_frames) if info.frames and max_frames else (info.frames or max_frames)
    return VideoInput(path, info.fps, hint, height, width, max_frames, resize)


def note_padding(height: int, width: int, patch: int) -> None:
    hp, wp = padded_size(height, width, patch)
    if (hp, wp) != (height, width):
        _note(
            f"{_size(height, width)} is not a multiple of the patch size {patch}: padding (edge replicate) to "
            f"{_size(hp, wp)} for the model and cropping the output back to {_size(height, width)}"
        )


def progress(total: int | None, desc: str):
    """A progress bar over chunks on stderr (shown only when stderr is a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="clip", file=sys.stderr, disable=None, leave=False)


def n_chunks(frames: int | None, clip_frames: int) -> int | None:
    return math.ceil(frames / clip_frames) if frames else None


# ---------------------------------------------------------------------------- commands


def cmd_info(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.ckpt, args.preset, None, INFO_PRESET)
    model = HydraXTokenizer.from_config(spec.config, device="meta")  # no memory, instant at any size
    counts = model.parameter_counts()
    c = spec.config
    source = f"checkpoint {spec.checkpoint} (config only)" if spec.checkpoint else f"preset {spec.preset}"
    print(f"HYDRA-X tokenizer, {source}")
    print(
        f"width {c.width}, depth {c.depth} (Gen-ViT {c.gen_depth} + Sem-ViT {c.sem_depth}), heads {c.heads}, "
        f"patch {c.patch_size}, latent channels {c.latent_channels}, temporal factor {c.temporal_factor}"
    )
    sampling = f", {c.flow_steps} Euler steps by default" if c.decoder == "flow" else ""
    print(f"pixel decoder: {c.decoder} ({c.decoder_depth} layers, width {c.decoder_width}{sampling})")
    print(f"{'part':<16}{'params (M)':>12}{'params':>16}")
    for part, n in counts.items():
        if part == "total":
            print("-" * 44)
        print(f"{part:<16}{n / 1e6:>12.1f}{n:>16d}")
    return 0


def _model_for(args: argparse.Namespace, spec: ModelSpec) -> HydraXTokenizer:
    device, dtype = resolve_device(args.device, args.dtype)
    return load_model(spec, device, dtype)


def _print_metrics(psnr_db: float, ssim_value: float | None, detail: str) -> None:
    ssim_text = f"{ssim_value:.4f}" if ssim_value is not None else f"n/a (under {2 * SSIM_RADIUS + 1} px)"
    print(f"PSNR {psnr_db:.2f} dB  SSIM {ssim_text}  ({detail})")


def _metrics(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float | None]:
    """Sums over frames of PSNR and SSIM of (3, n, H, W) x2; SSIM None when a side is under 11 px."""
    n = x.shape[1]
    p = video_psnr(x[None], y[None]).item() * n
    small = min(x.shape[-2:]) < 2 * SSIM_RADIUS + 1
    return p, None if small else video_ssim(x[None], y[None]).item() * n


def cmd_reconstruct(args: argparse.Namespace) -> int:
    src, out = Path(args.input), Path(args.output)
    kind = media_kind(src)
    check_output(out, kind)
    spec = resolve_spec(args.ckpt, args.preset, args.seed, DEFAULT_PRESET)
    if kind == "video":
        check_clip_frames(args.clip_frames, spec.config.temporal_factor)
    sampler = flow_sampler(args.steps, spec)
    media = open_input(src, args.resize, args.max_frames)
    model = _model_for(args, spec)
    patch = model.config.patch_size
    if isinstance(media, ImageInput):
        x = media.pixels  # (3, H, W)
        h, w = x.shape[-2:]
        note_padding(h, w, patch)
        y = decode_latent(model, encode_pixels(model, x, None), None, h, w, **sampler)  # (3, H, W)
        write_image(out, y)
        p, s = _metrics(x[:, None], y[:, None])
        _print_metrics(p, s, f"image {_size(h, w)} -> {out}")
        return 0
    note_padding(media.height, media.width, patch)
    total_p, total_s, count = 0.0, 0.0, 0
    with (
        VideoWriter(out, media.fps, crf=args.crf) as writer,
        progress(n_chunks(media.frames_hint, args.clip_frames), "reconstruct") as bar,
    ):
        for chunk in chunked(media.frames(), args.clip_frames):  # (3, n, H, W)
            n = chunk.shape[1]
            z = encode_pixels(model, chunk, args.clip_frames)
            y = decode_latent(model, z, n, media.height, media.width, **sampler)  # (3, n, H, W)
            writer.write(y)
            p, s = _metrics(chunk, y)
            total_p, count = total_p + p, count + n
            total_s = None if s is None else total_s + s
            bar.update(1)
    detail = f"mean over {count} frames, {_size(media.height, media.width)} at {media.fps:g} fps -> {out}"
    _print_metrics(total_p / count, None if total_s is None else total_s / count, detail)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    src, out = Path(args.input), Path(args.output)
    if out.suffix != ".safetensors":
        raise CliError(f"the latent output must be a .safetensors file; got {out}")
    if not out.parent.is_dir():
        raise CliError(f"cannot write {out}: the folder {out.parent} does not exist")
    kind = media_kind(src)
    spec = resolve_spec(args.ckpt, args.preset, args.seed, DEFAULT_PRESET)
    if kind == "video":
        check_clip_frames(args.clip_frames, spec.config.temporal_factor)
    media = open_input(src, args.resize, args.max_frames)
    model = _model_for(args, spec)
    patch = model.config.patch_size
    if isinstance(media, ImageInput):
        height, width = media.pixels.shape[-2:]
        note_padding(height, width, patch)
        latent = encode_pixels(model, media.pixels, None).cpu()  # (1, C, 1, h, w)
        frames, fps, clip = 1, "", 1
    else:
        height, width = media.height, media.width
        note_padding(height, width, patch)
        latents, frames = [], 0
        with progress(n_chunks(media.frames_hint, args.clip_frames), "encode") as bar:
            for chunk in chunked(media.frames(), args.clip_frames):
                latents.append(encode_pixels(model, chunk, args.clip_frames).cpu())  # (1, C, S, h, w)
                frames += chunk.shape[1]
                bar.update(1)
        latent = torch.cat(latents)  # (n_chunks, C, S, h, w): equal shapes thanks to the padding
        fps, clip = repr(media.fps), args.clip_frames
    hp, wp = padded_size(height, width, patch)
    metadata = {
        "format": LATENT_FORMAT,
        "hydra_x_version": hydra_x.__version__,
        "kind": kind,
        "height": str(height),
        "width": str(width),
        "padded_height": str(hp),
        "padded_width": str(wp),
        "frames": str(frames),
        "fps": fps,
        "clip_frames": str(clip),
        "checkpoint": spec.checkpoint or "",
        "preset": spec.preset or "",
        "seed": str(spec.seed),
        "dtype": str(latent.dtype).removeprefix("torch."),
        "source": src.name,
        "resize": str(args.resize or ""),
    }
    save_file({LATENT_KEY: latent.contiguous()}, str(out), metadata=metadata)
    what = f"image {_size(height, width)}" if kind == "image" else f"video {_size(height, width)}, {frames} frames"
    print(f"wrote {out}: latent {tuple(latent.shape)} of the {what}")
    return 0


def read_latent_file(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    """The latent tensor and metadata written by ``hydra-x encode``, checked."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CliError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CliError(f"{path}: empty file (0 bytes)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = f.keys()  # a list (safe_open has no __contains__)
            if LATENT_KEY not in names:
                raise CliError(f"{path}: no '{LATENT_KEY}' tensor; not a file written by '{PROG} encode'")
            latent = f.get_tensor(LATENT_KEY)
    except SafetensorError as err:
        raise CliError(f"{path}: not a readable safetensors file ({err})") from err
    required = ("kind", "height", "width", "frames", "clip_frames", "checkpoint", "preset", "seed")
    missing = [k for k in required if k not in meta]
    if meta.get("format") != LATENT_FORMAT or missing:
        raise CliError(f"{path}: not a latent file written by '{PROG} encode' (missing metadata {missing})")
    if latent.ndim != 5:
        raise CliError(f"{path}: the latent must be (n, C, S, h, w), got {tuple(latent.shape)}")
    return latent, meta


def cmd_decode(args: argparse.Namespace) -> int:
    src, out = Path(args.input), Path(args.output)
    latent, meta = read_latent_file(src)
    kind = meta["kind"]
    check_output(out, kind, what="latent")
    if args.ckpt or args.preset:
        spec = resolve_spec(args.ckpt, args.preset, args.seed, DEFAULT_PRESET)
    else:  # the model the latent was made with
        seed = int(meta["seed"]) if args.seed is None else args.seed
        spec = resolve_spec(meta["checkpoint"] or None, meta["preset"] or None, seed, DEFAULT_PRESET)
    height, width, frames, clip = (int(meta[k]) for k in ("height", "width", "frames", "clip_frames"))
    c = spec.config
    steps = c.latent_steps(clip) if kind == "video" else 1
    if latent.shape[1] != c.latent_channels or latent.shape[2] != steps:
        raise CliError(
            f"{src}: latent of shape {tuple(latent.shape)} does not fit {spec.describe()} "
            f"({c.latent_channels} channels, {steps} step(s) per chunk)"
        )
    sampler = flow_sampler(args.steps, spec)
    model = _model_for(args, spec)
    if kind == "image":
        y = decode_latent(model, latent[:1], None, height, width, **sampler)  # (3, H, W)
        write_image(out, y)
        print(f"wrote {out}: image {_size(height, width)}")
        return 0
    fps = float(meta.get("fps") or 25.0)
    with VideoWriter(out, fps, crf=args.crf) as writer, progress(latent.shape[0], "decode") as bar:
        for i in range(latent.shape[0]):  # chunk by chunk, as encoded: the same pixels as reconstruct
            n = min(clip, frames - i * clip)
            writer.write(decode_latent(model, latent[i : i + 1], n, height, width, **sampler))  # (3, n, H, W)
            bar.update(1)
    print(f"wrote {out}: {frames} frames, {_size(height, width)} at {fps:g} fps")
    return 0


# ---------------------------------------------------------------------------- the parser


def _add_model_options(p: argparse.ArgumentParser, *, decode: bool = False) -> None:
    from hydra_x.configs.tokenizer import TOKENIZER_PRESETS

    presets = ", ".join(TOKENIZER_PRESETS)
    recorded = " (default: the checkpoint recorded in the latent file, if any)" if decode else ""
    g = p.add_argument_group("model")
    g.add_argument(
        "--ckpt",
        metavar="DIR_OR_HUB_ID",
        help="trained weights: a folder holding config.json + model.safetensors (as save_pretrained writes it), "
        "or a Hugging Face Hub repo id" + recorded,
    )
    default = "the preset recorded in the latent file" if decode else DEFAULT_PRESET
    g.add_argument(
        "--preset",
        metavar="NAME",
        help=f"without --ckpt: the architecture to build with random weights, one of {presets} "
        f"(default: {default}); the output is then noise",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the random weights when no --ckpt is given, and of the flow decoder's sampling noise "
        "(default: 0" + (", or the seed recorded in the latent file)" if decode else ")"),
    )
    g.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to run the model; auto: cuda if available, else cpu (default: auto)",
    )
    g.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="model precision; auto: bfloat16 on cuda, float32 on cpu (default: auto)",
    )


def _add_media_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input")
    g.add_argument(
        "--clip-frames",
        type=int,
        default=17,
        metavar="N",
        help="videos: frames per chunk; each chunk is tokenized as an independent clip and must have "
        "1 + k * temporal_factor frames (1, 5, 9, 13, 17, ... for the default factor 4); the last, shorter "
        "chunk is padded by repeating its last frame and trimmed after decoding (default: 17)",
    )
    g.add_argument("--max-frames", type=int, metavar="N", help="videos: use only the first N frames")
    g.add_argument(
        "--resize",
        type=int,
        metavar="SHORT_SIDE",
        help="first resize so that the shorter side is SHORT_SIDE pixels (bicubic, antialiased, aspect kept); "
        "metrics then compare against the resized input",
    )


def _add_steps(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="flow-decoder checkpoints only: Euler sampling steps from noise (t = 1) to the image (t = 0); 1 gives "
        "the decoder's one-shot clean estimate (default: the checkpoint's flow_steps)",
    )


def _add_crf(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--crf",
        type=int,
        default=DEFAULT_CRF,
        metavar="CRF",
        help="video output quality, 0..51: the x264 (VP9 for .webm) constant rate factor, lower is better and "
        f"bigger; 0 is x264's lossless mode (of the YUV frames) (default: {DEFAULT_CRF})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="HYDRA-X tokenizer: parameter counts, and reconstruct / encode / decode images and videos. "
        "Pixels are handled in [-1, 1]; sizes that are not multiples of the patch size are padded (edge "
        "replicate) and cropped back. Set HYDRA_X_DEBUG=1 to see tracebacks of unexpected errors.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {hydra_x.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(  # dispatched in main() before parsing; listed here for --help
        "eval",
        help="reconstruction metrics under a pinned protocol (PSNR, SSIM, LPIPS, rFID / rFVD), for HYDRA-X "
        "and diffusers autoencoders; see 'hydra-x eval --help'",
        add_help=False,
    )
    p = sub.add_parser(
        "info",
        help="parameter counts per part of a preset or checkpoint",
        description="Print the parameter count of each part of the tokenizer (millions and exact). The model is "
        "built on the meta device, so no memory is used and no weights are loaded.",
    )
    from hydra_x.configs.tokenizer import TOKENIZER_PRESETS

    p.add_argument(
        "--preset",
        metavar="NAME",
        help=f"one of {', '.join(TOKENIZER_PRESETS)} (default: {INFO_PRESET})",
    )
    p.add_argument("--ckpt", metavar="DIR_OR_HUB_ID", help="a checkpoint folder or Hub repo id (reads its config.json)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "reconstruct",
        help="encode and decode an image or video, write the result and print PSNR / SSIM",
        description="Encode IN to the latent and decode it back (posterior mean: deterministic), write the "
        "reconstruction to OUT and print PSNR (dB) and SSIM (0-1) against the input on stdout; for videos the "
        "mean over frames. Metrics are computed on the decoded pixels (clamped to [-1, 1]) before OUT is "
        "quantised to 8 bits and compressed. Videos are processed in chunks of --clip-frames frames and "
        "written as they go.",
    )
    p.add_argument(
        "input",
        metavar="IN",
        help="an image (.png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff, .gif: its first frame) or a video file "
        "(anything FFmpeg opens: .mp4, .mkv, .webm, .mov, ...)",
    )
    p.add_argument(
        "output",
        metavar="OUT",
        help=f"the reconstruction: an image ({', '.join(IMAGE_OUTPUTS)}) for an image input, a video "
        f"({', '.join(VIDEO_WRITE_EXTENSIONS)}) for a video input",
    )
    _add_model_options(p)
    _add_media_options(p)
    _add_steps(p)
    _add_crf(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser(
        "encode",
        help="save the latent of an image or video to a .safetensors file",
        description="Encode IN and save the latent as the tensor 'latent' in OUT.safetensors: (1, C, 1, h, w) for "
        "an image, (n_chunks, C, S, h, w) for a video (one row per chunk of --clip-frames frames), with the "
        "metadata 'hydra-x decode' needs to reproduce exactly what 'hydra-x reconstruct' writes.",
    )
    p.add_argument("input", metavar="IN", help="an image or a video file, as for 'hydra-x reconstruct'")
    p.add_argument("output", metavar="OUT.safetensors", help="the latent file to write")
    _add_model_options(p)
    _add_media_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "decode",
        help="decode a latent file written by 'hydra-x encode' back to an image or video",
        description="Decode IN.safetensors (from 'hydra-x encode') to pixels, cropping the padding and trimming "
        "the padding frames as recorded in its metadata. Without --ckpt / --preset the model recorded in "
        "the file is used.",
    )
    p.add_argument("input", metavar="IN.safetensors", help="a latent file written by 'hydra-x encode'")
    p.add_argument(
        "output",
        metavar="OUT",
        help=f"an image ({', '.join(IMAGE_OUTPUTS)}) or a video ({', '.join(VIDEO_WRITE_EXTENSIONS)}), as "
        "the latent's kind requires",
    )
    _add_model_options(p, decode=True)
    _add_steps(p)
    _add_crf(p)
    p.set_defaults(func=cmd_decode)
    return parser


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def run_guarded(command: Callable[[], int], prog: str = PROG) -> int:
    """Run ``command`` with the CLI's error contract: 2 and one line for what the user can fix, 130 on ^C,
    1 and one line for anything else (a bug; the traceback with HYDRA_X_DEBUG=1). Shared by ``hydra-x eval``."""
    try:
        return command()
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except (CliError, MediaError) as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(
            f"{prog}: error: unexpected {type(err).__name__}: {_one_line(err)} "
            f"(this is a bug; set {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 a problem the user can fix, 1 a bug)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["eval"]:  # its own parser (hydra_x.eval.cli); also runs under torchrun
        from hydra_x.eval.cli import main as eval_main

        return eval_main(argv[1:])

    def command() -> int:
        args = build_parser().parse_args(argv)
        if getattr(args, "crf", DEFAULT_CRF) not in range(0, 52):
            raise CliError(f"--crf must be in 0..51, got {args.crf}")
        return args.func(args)

    return run_guarded(command)


if __name__ == "__main__":
    sys.exit(main())
