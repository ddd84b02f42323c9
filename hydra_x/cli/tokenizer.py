"""The tokenizer's commands: parameter counts, and reconstruct / encode / decode images and videos.

    hydra-x info [--preset so400m | --ckpt DIR]
    hydra-x reconstruct IN OUT [model options] [--clip-frames 17] [--max-frames N] [--resize SHORT_SIDE] [--steps N]
                       [--max-image-pixels N] [--no-metrics]
    hydra-x encode IN OUT.safetensors [same options, but --no-metrics]
    hydra-x decode IN.safetensors OUT [model options] [--steps N]

A checkpoint with a flow-matching decoder samples its pixels: ``--steps`` Euler steps (default: its config's
flow_steps) from noise seeded by ``--seed``, so the same seed gives the same pixels. Each command parses,
calls the library (hydra_x.tokenizer.io, hydra_x.data.inputs) and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hydra_x.cli.common import CliError, note, progress, warn
from hydra_x.data.inputs import IMAGE_OUTPUTS, ImageInput, check_output, media_kind, open_input
from hydra_x.data.media import DEFAULT_MAX_IMAGE_PIXELS, IMAGE_EXTENSIONS, PIXEL_LIMIT_ENV, write_image
from hydra_x.data.video import DEFAULT_CRF, VIDEO_WRITE_EXTENSIONS, VideoWriter
from hydra_x.device import resolve_device
from hydra_x.eval.metrics import FrameMetrics
from hydra_x.tokenizer import TOKENIZER_PRESETS, HydraXTokenizer
from hydra_x.tokenizer.io import (
    DEFAULT_CLIP_FRAMES,
    TokenizerSource,
    check_clip_frames,
    chunked,
    decode_latent,
    encode_pixels,
    flow_sampler,
    load_tokenizer,
    n_chunks,
    padded_size,
    read_latent_file,
    reconstruct_chunks,
    reconstruct_image,
    resolve_source,
    write_latent_file,
)

DEFAULT_PRESET = "tiny"  # model commands: small enough to run anywhere (random weights without --ckpt)
INFO_PRESET = "so400m"  # info: the paper's size


def _size(height: int, width: int) -> str:
    return f"{width}x{height}"  # the usual width x height notation


def load_for_cli(source: TokenizerSource, device: torch.device, dtype: torch.dtype) -> HydraXTokenizer:
    """The tokenizer, with a warning on stderr when it has random weights."""
    if source.checkpoint is None:
        warn(
            f"no trained weights given (--ckpt); using a randomly initialised '{source.preset}' tokenizer "
            f"(seed {source.seed}), so the output is noise"
        )
    return load_tokenizer(source, device, dtype)


def note_padding(height: int, width: int, patch: int) -> None:
    hp, wp = padded_size(height, width, patch)
    if (hp, wp) != (height, width):
        note(
            f"{_size(height, width)} is not a multiple of the patch size {patch}: padding (edge replicate) to "
            f"{_size(hp, wp)} for the model and cropping the output back to {_size(height, width)}"
        )


# ---------------------------------------------------------------------------- commands


def cmd_info(args: argparse.Namespace) -> int:
    source = resolve_source(args.ckpt, args.preset, None, INFO_PRESET)
    model = HydraXTokenizer.from_config(source.config, device="meta")  # no memory, instant at any size
    counts = model.parameter_counts()
    c = source.config
    source = f"checkpoint {source.checkpoint} (config only)" if source.checkpoint else f"preset {source.preset}"
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


def _model_for(args: argparse.Namespace, source: TokenizerSource) -> HydraXTokenizer:
    device, dtype = resolve_device(args.device, args.dtype)
    return load_for_cli(source, device, dtype)


def _report(metrics: FrameMetrics | None, out: Path, what: str) -> None:
    """The result line: PSNR / SSIM and what was written, or (--no-metrics) what was written."""
    print(f"{metrics.summary()}  ({what} -> {out})" if metrics else f"wrote {out}: {what}")


def cmd_reconstruct(args: argparse.Namespace) -> int:
    _check_crf(args)
    src, out = Path(args.input), Path(args.output)
    kind = media_kind(src)
    check_output(out, kind)
    source = resolve_source(args.ckpt, args.preset, args.seed, DEFAULT_PRESET)
    if kind == "video":
        check_clip_frames(args.clip_frames, source.config.temporal_factor)
    sampler = flow_sampler(args.steps, source)
    media = open_input(src, args.resize, args.max_frames, args.max_image_pixels)
    model = _model_for(args, source)
    patch = model.config.patch_size
    metrics = None if args.no_metrics else FrameMetrics()
    if isinstance(media, ImageInput):
        x = media.pixels  # (3, H, W)
        h, w = x.shape[-2:]
        note_padding(h, w, patch)
        y = reconstruct_image(model, x, **sampler)  # (3, H, W)
        write_image(out, y)
        if metrics:
            metrics.add(x[:, None], y[:, None])
        _report(metrics, out, f"image {_size(h, w)}")
        return 0
    note_padding(media.height, media.width, patch)
    frames = 0
    with (
        VideoWriter(out, media.fps, crf=args.crf) as writer,
        progress(n_chunks(media.frames_hint, args.clip_frames), "reconstruct") as bar,
    ):
        chunks = reconstruct_chunks(model, media.frames(), args.clip_frames, media.height, media.width, **sampler)
        for chunk, y in chunks:  # (3, n, H, W) each
            writer.write(y)
            frames += chunk.shape[1]
            if metrics:
                metrics.add(chunk, y)
            bar.update(1)
    what = f"{frames} frames, {_size(media.height, media.width)} at {media.fps:g} fps"
    _report(metrics, out, f"mean over {what}" if metrics else what)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    src, out = Path(args.input), Path(args.output)
    if out.suffix != ".safetensors":
        raise CliError(f"the latent output must be a .safetensors file; got {out}")
    if not out.parent.is_dir():
        raise CliError(f"cannot write {out}: the folder {out.parent} does not exist")
    kind = media_kind(src)
    source = resolve_source(args.ckpt, args.preset, args.seed, DEFAULT_PRESET)
    if kind == "video":
        check_clip_frames(args.clip_frames, source.config.temporal_factor)
    media = open_input(src, args.resize, args.max_frames, args.max_image_pixels)
    model = _model_for(args, source)
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
        "kind": kind,
        "height": str(height),
        "width": str(width),
        "padded_height": str(hp),
        "padded_width": str(wp),
        "frames": str(frames),
        "fps": fps,
        "clip_frames": str(clip),
        "checkpoint": source.checkpoint or "",
        "preset": source.preset or "",
        "seed": str(source.seed),
        "dtype": str(latent.dtype).removeprefix("torch."),
        "source": src.name,
        "resize": str(args.resize or ""),
    }
    write_latent_file(out, latent, metadata)
    what = f"image {_size(height, width)}" if kind == "image" else f"video {_size(height, width)}, {frames} frames"
    print(f"wrote {out}: latent {tuple(latent.shape)} of the {what}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    _check_crf(args)
    src, out = Path(args.input), Path(args.output)
    latent, meta = read_latent_file(src)
    kind = meta["kind"]
    check_output(out, kind, what="latent")
    if args.ckpt or args.preset:
        source = resolve_source(args.ckpt, args.preset, args.seed, DEFAULT_PRESET)
    else:  # the model the latent was made with
        seed = int(meta["seed"]) if args.seed is None else args.seed
        source = resolve_source(meta["checkpoint"] or None, meta["preset"] or None, seed, DEFAULT_PRESET)
    height, width, frames, clip = (int(meta[k]) for k in ("height", "width", "frames", "clip_frames"))
    c = source.config
    steps = c.latent_steps(clip) if kind == "video" else 1
    if latent.shape[1] != c.latent_channels or latent.shape[2] != steps:
        raise CliError(
            f"{src}: latent of shape {tuple(latent.shape)} does not fit {source.describe()} "
            f"({c.latent_channels} channels, {steps} step(s) per chunk)"
        )
    sampler = flow_sampler(args.steps, source)
    model = _model_for(args, source)
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
        default=DEFAULT_CLIP_FRAMES,
        metavar="N",
        help="videos: frames per chunk; each chunk is tokenized as an independent clip and must have "
        "1 + k * temporal_factor frames (1, 5, 9, 13, 17, ... for the default factor 4); the last, shorter "
        f"chunk is padded by repeating its last frame and trimmed after decoding (default: {DEFAULT_CLIP_FRAMES})",
    )
    g.add_argument("--max-frames", type=int, metavar="N", help="videos: use only the first N frames")
    g.add_argument(
        "--resize",
        type=int,
        metavar="SHORT_SIDE",
        help="first resize so that the shorter side is SHORT_SIDE pixels (bicubic, antialiased, aspect kept); "
        "metrics then compare against the resized input",
    )
    g.add_argument(
        "--max-image-pixels",
        type=int,
        metavar="N",
        help="images: refuse an image of more than N pixels (width x height), a guard against decompression "
        f"bombs; 0: no limit (default: ${PIXEL_LIMIT_ENV} if set, else {DEFAULT_MAX_IMAGE_PIXELS:,}, what "
        "Pillow itself refuses, e.g. 13,377 x 13,377)",
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


def _check_crf(args: argparse.Namespace) -> None:
    if getattr(args, "crf", DEFAULT_CRF) not in range(0, 52):
        raise CliError(f"--crf must be in 0..51, got {args.crf}")


def add_commands(sub) -> None:
    """Register info, reconstruct, encode and decode on the ``hydra-x`` parser's subcommands."""
    p = sub.add_parser(
        "info",
        help="parameter counts per part of a preset or checkpoint",
        description="Print the parameter count of each part of the tokenizer (millions and exact). The model is "
        "built on the meta device, so no memory is used and no weights are loaded.",
    )
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
        "written as they go. Stopped by ^C or SIGTERM, it leaves no partial OUT behind (exit 130 / 143).",
    )
    p.add_argument(
        "input",
        metavar="IN",
        help=f"an image ({', '.join(sorted(IMAGE_EXTENSIONS))}; animated ones: the first frame) or a video file "
        "(any other extension: anything FFmpeg opens, .mp4, .mkv, .webm, .mov, ...)",
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
    p.add_argument(
        "--no-metrics",
        action="store_true",
        help="skip PSNR / SSIM and print only what was written (they take a few seconds of CPU for a 4096 x "
        "4096 image or 17 frames of 720p)",
    )
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
