"""The web app's work, one plain function per tab: paths and numbers in; uint8 arrays, video files and text out.

Nothing here imports Gradio, so every tab can be tested (and reused) without a browser; hydra_x.web.app only
wires these functions to components. Each function checks its inputs against :class:`~hydra_x.web.uploads.Limits`
before any slow work and calls the same library code as the CLI: ``hydra-x reconstruct`` (hydra_x.tokenizer.io,
FrameMetrics), ``hydra-x generate`` / ``edit`` (HydraX sampling, its defaults and progress callback) and
``hydra-x chat`` (fit_to_patches, read_clip). ``progress(done, total, what)`` is called as work advances (per
sampling step, per video chunk). Results of the user's request go to the caller or to ``files``, the session's
own folder; nothing is kept here between calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hydra_x.data.inputs import fit_to_patches, media_kind
from hydra_x.data.media import to_uint8
from hydra_x.data.video import VideoWriter, write_video
from hydra_x.errors import InputError
from hydra_x.eval.metrics import FrameMetrics
from hydra_x.nn.flow import SAMPLERS, velocity_calls
from hydra_x.tokenizer.io import (
    DEFAULT_CLIP_FRAMES,
    TokenizerSource,
    check_clip_frames,
    flow_sampler,
    n_chunks,
    reconstruct_chunks,
    reconstruct_image,
)
from hydra_x.unified.chat import chat as _chat
from hydra_x.unified.sampling import BlockSampling
from hydra_x.web.session import SessionFiles
from hydra_x.web.uploads import (
    Limits,
    check_prompt,
    probe_video_upload,
    read_clip_upload,
    read_image_upload,
    upload_errors,
)

Progress = Callable[[int, "int | None", str], None]  # (done, total or None, what)
GENERATED_FPS = 8.0  # frame rate of a generated video, as `hydra-x generate --fps` has it


def no_progress(done: int, total: int | None, what: str) -> None:
    """The default ``progress``: nothing shown."""


def _chat_default(name: str):
    return inspect.signature(_chat).parameters[name].default


def check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:  # what a torch.Generator takes
        raise InputError(f"the seed must be a whole number from 0 to 2**63 - 1, got {seed}")


@dataclass(frozen=True)
class Sampling:
    """Flow-matching options, with the library's (and so the CLI's) defaults."""

    steps: int = BlockSampling.steps
    guidance: float = BlockSampling.guidance
    sampler: str = BlockSampling.sampler
    seed: int = BlockSampling.seed

    def kwargs(self, limits: Limits, progress: Progress, what: str) -> dict:
        """HydraX sampling keyword arguments, checked, with a progress callback over the velocity evaluations."""
        if not 1 <= self.steps <= limits.max_steps:
            raise InputError(f"steps must be 1 to {limits.max_steps}, got {self.steps}")
        if self.sampler not in SAMPLERS:
            raise InputError(f"the sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not 0 < self.guidance <= 100:
            raise InputError(f"guidance must be above 0 (1 disables it), got {self.guidance}")
        check_seed(self.seed)
        total = velocity_calls(self.steps, self.sampler)
        return {
            "steps": self.steps,
            "guidance": self.guidance,
            "sampler": self.sampler,
            "seed": self.seed,
            "progress": lambda n: progress(n, total, what),
        }


@dataclass(frozen=True)
class ChatOptions:
    """Text decoding options, with the library's (and so the CLI's) defaults: greedy unless ``top_p`` is set."""

    max_new_tokens: int = _chat_default("max_new_tokens")
    top_p: float | None = _chat_default("top_p")
    temperature: float = _chat_default("temperature")
    seed: int = _chat_default("seed")

    def kwargs(self, limits: Limits) -> dict:
        if not 1 <= self.max_new_tokens <= limits.max_new_tokens:
            raise InputError(f"max new tokens must be 1 to {limits.max_new_tokens}, got {self.max_new_tokens}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(f"top-p must be in (0, 1], got {self.top_p}")
        if not self.temperature > 0:
            raise InputError(f"the temperature must be above 0, got {self.temperature}")
        check_seed(self.seed)
        return {
            "max_new_tokens": self.max_new_tokens,
            "top_p": self.top_p,
            "temperature": self.temperature,
            "seed": self.seed,
        }


@dataclass
class Reconstruction:
    """Original and reconstruction: uint8 (H, W, 3) arrays for an image, MP4 files for a video."""

    kind: str
    original: np.ndarray | Path
    reconstruction: np.ndarray | Path
    psnr: float
    ssim: float | None
    summary: str  # FrameMetrics.summary() (what `hydra-x reconstruct` prints) and what was compared


# ---------------------------------------------------------------------------- reconstruction


def _decoder_sampling(model) -> dict:
    """The pixel decoder's options: a flow decoder samples with its checkpoint's steps from seed 0, as the CLI."""
    tok = model.tokenizer
    return flow_sampler(None, TokenizerSource(tok.config, "the checkpoint's tokenizer", None, 0))


def reconstruct(
    model, path: str | Path, limits: Limits, files: SessionFiles, progress: Progress = no_progress
) -> Reconstruction:
    """Encode and decode an uploaded image or video with the checkpoint's tokenizer; PSNR / SSIM as the CLI's."""
    path = Path(path)
    if media_kind(path) == "image":
        x = read_image_upload(path, limits)
        progress(0, 1, "reconstruct")
        y = reconstruct_image(model.tokenizer, x, **_decoder_sampling(model))
        progress(1, 1, "reconstruct")
        metrics = FrameMetrics()
        metrics.add(x[:, None], y[:, None])
        what = f"image {x.shape[-1]}x{x.shape[-2]}"
        return Reconstruction("image", to_uint8(x), to_uint8(y), metrics.psnr, metrics.ssim, _line(metrics, what))
    return _reconstruct_video(model, path, limits, files, progress)


def _reconstruct_video(model, path: Path, limits: Limits, files: SessionFiles, progress: Progress) -> Reconstruction:
    """Chunk by chunk, as ``hydra-x reconstruct``; the frames read are written too, so the page shows both alike."""
    media = probe_video_upload(path, limits)
    tok = model.tokenizer
    check_clip_frames(DEFAULT_CLIP_FRAMES, tok.config.temporal_factor)
    total = n_chunks(media.frames_hint, DEFAULT_CLIP_FRAMES)
    original, reconstruction = files.new_path(".mp4"), files.new_path(".mp4")
    metrics, frames = FrameMetrics(), 0
    chunks = reconstruct_chunks(
        tok, media.frames(), DEFAULT_CLIP_FRAMES, media.height, media.width, **_decoder_sampling(model)
    )
    progress(0, total, "reconstruct")
    with upload_errors(path), VideoWriter(original, media.fps) as a, VideoWriter(reconstruction, media.fps) as b:
        for i, (chunk, y) in enumerate(chunks):
            a.write(chunk)
            b.write(y)
            metrics.add(chunk, y)
            frames += chunk.shape[1]
            progress(i + 1, total, "reconstruct")
    what = f"mean over {frames} frames, {media.width}x{media.height} at {media.fps:g} fps"
    if frames == limits.max_video_frames:
        what += f"; the first {frames} frames only, this app's limit"
    return Reconstruction("video", original, reconstruction, metrics.psnr, metrics.ssim, _line(metrics, what))


def _line(metrics: FrameMetrics, what: str) -> str:
    return f"{metrics.summary()}  ({what})"


# ---------------------------------------------------------------------------- generation and editing


def check_output_size(height: int, width: int, frames: int | None, limits: Limits) -> None:
    """Sizes the app allows (the model checks the patch grid and the 1 + 4k frames itself)."""
    side = limits.max_output_side
    if not (0 < height <= side and 0 < width <= side):
        raise InputError(f"height and width must be 1 to {side} pixels in this app, got {width}x{height}")
    if frames is not None and not 0 < frames <= limits.max_output_frames:
        raise InputError(f"a video has at most {limits.max_output_frames} frames in this app, got {frames}")


def text_to_image(
    model, prompt: str, sampling: Sampling, height: int, width: int, limits: Limits, progress: Progress = no_progress
) -> np.ndarray:
    """``hydra-x generate PROMPT``: a uint8 (H, W, 3) image."""
    prompt = check_prompt(prompt, "prompt", limits)
    check_output_size(height, width, None, limits)
    options = sampling.kwargs(limits, progress, "generate")
    return to_uint8(model.generate_image(prompt, height=height, width=width, **options))


def text_to_video(
    model,
    prompt: str,
    sampling: Sampling,
    height: int,
    width: int,
    frames: int,
    limits: Limits,
    files: SessionFiles,
    fps: float = GENERATED_FPS,
    progress: Progress = no_progress,
) -> Path:
    """``hydra-x generate PROMPT --frames N``: an MP4 file in the session's folder."""
    prompt = check_prompt(prompt, "prompt", limits)
    check_output_size(height, width, frames, limits)
    if not 0 < fps <= 120:
        raise InputError(f"the frame rate must be above 0 and at most 120, got {fps}")
    options = sampling.kwargs(limits, progress, "generate")
    clip = model.generate_video(prompt, frames=frames, height=height, width=width, **options)
    return write_video(files.new_path(".mp4"), clip, fps)


def _model_size(model, size: int | None, limits: Limits, default: int | None = None) -> int:
    """The short side a picture is resized to for the model (default: ``default``, else the model's image_size)."""
    size = size or default or model.config.image_size
    patch = model.config.tokenizer.patch_size
    if not patch <= size <= limits.max_output_side:
        raise InputError(f"the size must be {patch} (the patch size) to {limits.max_output_side} pixels, got {size}")
    return size


def edit_image(
    model,
    path: str | Path,
    instruction: str,
    sampling: Sampling,
    limits: Limits,
    size: int | None = None,
    progress: Progress = no_progress,
) -> tuple[np.ndarray, np.ndarray]:
    """``hydra-x edit IMAGE INSTRUCTION``: the source as the model sees it and the edited image, uint8 (H, W, 3)."""
    instruction = check_prompt(instruction, "instruction", limits)
    size = _model_size(model, size, limits)
    options = sampling.kwargs(limits, progress, "edit")
    image = fit_to_patches(read_image_upload(path, limits), size, model.config.tokenizer.patch_size)
    return to_uint8(image), to_uint8(model.edit(image, instruction, **options))


# ---------------------------------------------------------------------------- chat


def chat_reply(
    model,
    conversation: list[dict[str, str]],
    message: str,
    media: str | Path | None,
    options: ChatOptions,
    limits: Limits,
    size: int | None = None,
    frames: int | None = None,
) -> tuple[str, list[dict[str, str]]]:
    """``hydra-x chat``, one turn of a conversation about ``media`` (an image or a video file, or None: text).

    ``conversation``: the earlier turns, ``{"role", "content"}`` in plain text; the picture's placeholder is
    put in the first user turn here, for every turn. Returns the reply and the conversation with both new turns.
    """
    message = check_prompt(message, "message", limits)
    kwargs = options.kwargs(limits)
    image = video = None
    if media:
        patch = model.config.tokenizer.patch_size
        kind = media_kind(Path(media))
        size = _model_size(model, size, limits, model.config.chat_side(kind))
        if kind == "image":
            image = fit_to_patches(read_image_upload(media, limits), size, patch)
        else:
            video = fit_to_patches(read_clip_upload(media, frames or model.config.clip_frames, limits), size, patch)
    turns = [*conversation, {"role": "user", "content": message}]
    messages = [dict(m) for m in turns]
    if image is not None or video is not None:
        first = next(m for m in messages if m["role"] == "user")
        first["content"] = ("<image>\n" if image is not None else "<video>\n") + first["content"]
    reply = model.chat(messages, image=image, video=video, **kwargs)
    return reply, [*turns, {"role": "assistant", "content": reply}]
