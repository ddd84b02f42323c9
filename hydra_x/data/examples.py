"""One training example of the unified model: a chat conversation with visual placeholders and its visuals.

An :class:`Example` is what every source of :mod:`hydra_x.data.mixture` produces and what the trainer turns into
tokens (``hydra_x.unified.sequence.build_sequence``): ``messages`` are ``{"role", "content"}`` dicts whose content
holds ``<image>`` / ``<video>`` placeholders, ``visuals`` the pixels for them in placeholder order. A visual the
model reads (in a user or system message) has role "understand"; one it learns to generate (the assistant's
message) has role "generate". Examples are checked when made, so a malformed one fails at its source, with the
source's key in the message, instead of deep inside the trainer.

Also here: fitting decoded media to the configured size (images resized to cover a square and centre-cropped,
clips decoded at a frame stride from the middle of the video), shared by the file-backed sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hydra_x.data.buckets import FrameFitter, resize_crop
from hydra_x.data.failures import SampleError
from hydra_x.data.folders import ClipSpec, decode_clip

TASKS = ("text", "image_caption", "image_gen", "video_caption", "video_gen", "image_sft", "video_sft", "edit")
ROLES = ("understand", "generate")
MESSAGE_ROLES = ("system", "user", "assistant")
# The placeholders hydra_x.unified.sequence understands (a test checks they agree; data does not import unified).
PLACEHOLDERS = {"<image>": "image", "<video>": "video"}
PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
IMAGE_CAPTION_PROMPTS = (
    "Describe the image.",
    "What is in this picture?",
    "Write a short caption for the image.",
    "What do you see?",
)
VIDEO_CAPTION_PROMPTS = ("Describe the video.", "What happens in this video?", "Write a short caption for the video.")
CLIP_START = 0.5  # where in a video a clip is taken (fraction of the room left): the middle, the same every time

# What each task's visuals are, in order, as (kind, role); None: checked by _check_sft instead.
_TASK_VISUALS: dict[str, tuple[tuple[str, str], ...] | None] = {
    "text": (),
    "image_caption": (("image", "understand"),),
    "image_gen": (("image", "generate"),),
    "video_caption": (("video", "understand"),),
    "video_gen": (("video", "generate"),),
    "edit": (("image", "understand"), ("image", "generate")),
    "image_sft": None,
    "video_sft": None,
}
# The tasks whose examples hold a visual the model learns to generate.
GENERATION_TASKS = tuple(t for t, visuals in _TASK_VISUALS.items() if any(r == "generate" for _, r in visuals or ()))
# The tasks whose images the model only reads: they may come at another size than generation's
# (UnifiedDataConfig.understanding_image_size). Clips stay at generation's size (at 128 px a 9-frame clip is 192 tokens
# of the `small` tokenizer, four times its 64-px cost), and an edit's source at its target's: the two go through the
# tokenizer as one 2-step clip.
READ_IMAGE_TASKS = tuple(t for t in TASKS if t.startswith("image_") and t not in GENERATION_TASKS)


def task_image_size(task: str, image_size: int, understanding_image_size: int | None) -> int:
    """The side of ``task``'s pictures: ``understanding_image_size`` for READ_IMAGE_TASKS where it is given, else
    ``image_size``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if understanding_image_size is not None and task in READ_IMAGE_TASKS:
        return understanding_image_size
    return image_size


class ExampleError(ValueError):
    """An example that breaks the rules above: a bug in the source that built it, never a data problem."""


@dataclass(frozen=True)
class Visual:
    """Pixels float32 in [-1, 1]: an image (3, H, W) or a clip (3, F, H, W); ``role`` "understand" | "generate"."""

    pixels: torch.Tensor
    role: str = "understand"

    @property
    def kind(self) -> str:
        return "video" if self.pixels.ndim == 4 else "image"


@dataclass(frozen=True)
class Example:
    task: str  # one of TASKS
    messages: list[dict[str, str]]
    visuals: list[Visual] = field(default_factory=list)
    key: str = ""  # a stable id for logs: "shapes:train:image_gen:123", "data.jsonl:17", "shard.tar:000042"

    def __post_init__(self) -> None:
        try:
            check_example(self)
        except ExampleError as err:
            raise ExampleError(f"example {self.key or '(no key)'}: {err}") from None


def checked_elsewhere(task: str, messages: list[dict[str, str]], visuals: list[Visual], key: str) -> Example:
    """An Example rebuilt from the parts of one that passed :func:`check_example` where it was made (a data worker),
    without checking it again: the check reads every pixel, thousands of pictures a step on the trainer's side."""
    example = object.__new__(Example)
    for name, value in (("task", task), ("messages", messages), ("visuals", visuals), ("key", key)):
        object.__setattr__(example, name, value)
    return example


def placeholder_roles(messages: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(kind, message role) of every placeholder, in order."""
    found = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in MESSAGE_ROLES or not isinstance(m.get("content"), str):
            raise ExampleError(f"message {i} must be {{'role': one of {MESSAGE_ROLES}, 'content': str}}, got {m!r}")
        found += [(PLACEHOLDERS[p], m["role"]) for p in PLACEHOLDER_RE.findall(m["content"])]
    return found


def _check_pixels(i: int, v: Visual) -> None:
    x = v.pixels
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.ndim not in (3, 4) or x.shape[0] != 3:
        what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ExampleError(f"visual {i}: pixels must be float32 (3, H, W) or (3, F, H, W), got {what}")
    if x.numel() == 0:
        raise ExampleError(f"visual {i}: empty pixels {tuple(x.shape)}")
    lo, hi = torch.aminmax(x)
    if not (float(lo) >= -1.0 and float(hi) <= 1.0):  # NaN fails this too
        raise ExampleError(f"visual {i}: pixels must lie in [-1, 1], got [{float(lo)}, {float(hi)}]")


def check_example(ex: Example) -> None:
    """Raise ExampleError unless ``ex`` follows the rules of the module docstring."""
    if ex.task not in TASKS:
        raise ExampleError(f"unknown task {ex.task!r}; expected one of {TASKS}")
    if not any(m.get("role") == "assistant" for m in ex.messages if isinstance(m, dict)):
        raise ExampleError("no assistant message: nothing to learn")
    slots = placeholder_roles(ex.messages)
    if len(slots) != len(ex.visuals):
        raise ExampleError(f"{len(slots)} placeholder(s) in the messages but {len(ex.visuals)} visual(s)")
    for i, ((kind, where), v) in enumerate(zip(slots, ex.visuals)):
        if v.role not in ROLES:
            raise ExampleError(f"visual {i}: role must be one of {ROLES}, got {v.role!r}")
        _check_pixels(i, v)
        if v.kind != kind:
            raise ExampleError(f"placeholder {i} is <{kind}> but visual {i} is a{'n' * (v.kind == 'image')} {v.kind}")
        # The assistant writes what is generated; everything else is read.
        if (where == "assistant") != (v.role == "generate"):
            raise ExampleError(f"visual {i} has role {v.role!r} but its placeholder is in a {where} message")
    expected = _TASK_VISUALS[ex.task]
    got = tuple((v.kind, v.role) for v in ex.visuals)
    if expected is None:
        _check_sft(ex.task, got)
    elif got != expected:
        raise ExampleError(f"a {ex.task} example has visuals {expected}, got {got}")
    if ex.task in ("image_gen", "video_gen"):
        reply = [m["content"] for m in ex.messages if m["role"] == "assistant"]
        if reply != [f"<{expected[0][0]}>"]:
            raise ExampleError(f"the assistant of a {ex.task} example writes just <{expected[0][0]}>, got {reply}")


def _check_sft(task: str, got: tuple[tuple[str, str], ...]) -> None:
    if not got or any(role != "understand" for _, role in got):
        raise ExampleError(f"a {task} example reads one or more visuals and generates none, got {got}")
    kinds = {kind for kind, _ in got}
    if task == "image_sft" and kinds != {"image"}:
        raise ExampleError(f"an image_sft example has images only, got {got}")
    if task == "video_sft" and "video" not in kinds:
        raise ExampleError(f"a video_sft example has at least one video, got {got}")


def edit_messages(instruction: str) -> list[dict[str, str]]:
    """An edit example's (and an edit request's) chat: the source image and the instruction; the reply is the
    target image."""
    return [{"role": "user", "content": f"<image>\n{instruction}"}, {"role": "assistant", "content": "<image>"}]


# ---------------------------------------------------------------------------- shared by the file-backed sources


def seen_again(err: SampleError) -> SampleError:
    """A new error like ``err`` (which failed before and was reported then) with ``seen`` set. New, because raising
    one stored exception over and over would grow its traceback on every raise."""
    again = SampleError(err.path, err.problem, err.category, whole_file=err.whole_file)
    again.seen = True
    return again


def fit_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) -> (3, size, size): scaled to cover the square (never squashed), centre crop."""
    return resize_crop(x, (size, size))


def load_clip(src: str | Path | bytes, name: str, frames: int, stride: int, size: int) -> torch.Tensor:
    """``frames`` frames, every ``stride``-th, from the middle of a video file or its bytes -> (3, F, size, size).

    The tokenizer's decoder does the work (hydra_x.data.folders.decode_clip: seeking, truncated-video rules,
    SampleError "too_short" / "corrupt"); the middle, not a random start, so that an example is the same on every
    draw and a caption written for the whole video is as likely to fit as it can be.
    """
    fitter = lambda h, w: FrameFitter(h, w, (size, size), None, False)
    return decode_clip(src, name, ClipSpec(frames, stride), CLIP_START, fitter)
