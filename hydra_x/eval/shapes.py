"""Scorers for the shapes world, GenEval in spirit: does a generated image, answer, clip or edit do what was asked?

Every image is read back into objects by :mod:`hydra_x.eval.shapes_read` (colour, shape, box, coverage-weighted
area and centroid), so a score needs no detector network and is exact on ground-truth renders.

Generation (:func:`score_generation`), per item, counts objects by their SHAPE (GenEval's classes): for every
shape the prompt names, the image must hold exactly as many objects of that shape as asked (GenEval's
counting rule, applied to every category: an extra circle fails "a purple circle"); shapes not named are
ignored. On top of that, per category as GenEval checks them:

====================  ==================================================================================
single_object         the shape is there, once
two_object            both shapes, once each
counting              exactly n of the shape
colors                ... and the object has the asked colour
position              ... both kinds (colour and shape), and A's box centre lies in the asked direction from
                      B's (GenEval's rule: the centre offset, less 0.1 of the two box sizes, points within
                      60 degrees of that direction)
color_attr            ... both kinds, each object with its own colour
====================  ==================================================================================

An item is correct only if every check holds; ``strict`` also checks colours in every category. The overall
score is, as GenEval reports it, the mean of the category accuracies.

Understanding: exact match after normalising (lowercase, no punctuation, number words as digits). Video: the
object is found exactly once in every frame and moves the asked way between the first and the last frame.
Editing: success (the instruction holds, the other objects keep their kind and place, nothing else appears)
and consistency, PSNR and SSIM (:mod:`hydra_x.eval.metrics`) outside the edited objects' regions.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from hydra_x.data.shapes import ShapeObject, render_image
from hydra_x.data.shapes_text import NUMBERS
from hydra_x.eval.metrics import SSIM_RADIUS, psnr, ssim
from hydra_x.eval.prompts import CATEGORIES, EditItem, GenerationItem, VideoItem
from hydra_x.eval.shapes_read import DetectedObject, read_clip, read_motion, read_objects

POSITION_THRESHOLD = 0.1  # GenEval's: the share of both boxes' sizes taken off the centre offset
CHECKS_COLOUR = {"single_object": False, "two_object": False, "counting": False, "colors": True}
PLACE_TOLERANCE = 0.05  # of the image side: an unchanged object's centre may move this much (truth: < 1.5 px)
MIN_MOVE = 0.05  # of the image side: what counts as moved (read_motion's default too)
RESIZE_MARGIN = 1.2  # "bigger": the side grows by at least this factor ("smaller": shrinks by it); truth 1.5
EDIT_MARGIN = 0.03  # of the shorter side: the band around edited boxes left out of consistency
PSNR_CAP = 100.0  # dB: identical pixels (inf) count as this in means, so one exact item cannot dominate


# -- generation -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationScore:
    id: str
    category: str
    correct: bool  # the category's checks (GenEval)
    strict: bool  # every attribute the prompt states, colours included
    found: tuple[tuple[str, str], ...]  # the (colour, shape) of every object read
    reason: str  # the first failed check; "" when correct
    asked: int = 0  # how many objects the prompt asks for
    in_asked_colour: int = 0  # how many of ``found`` have a colour the prompt names
    sample: int = 0  # which of the prompt's samples (GenEval draws several a prompt)


def geneval_relations(a: DetectedObject, b: DetectedObject) -> set[str]:
    """Where ``a`` is relative to ``b`` by GenEval's rule, in pixels: of "left", "right", "above", "below"."""
    ca = np.array([(a.bbox[0] + a.bbox[2]) / 2, (a.bbox[1] + a.bbox[3]) / 2])
    cb = np.array([(b.bbox[0] + b.bbox[2]) / 2, (b.bbox[1] + b.bbox[3]) / 2])
    dims = np.array([a.bbox[2] - a.bbox[0] + b.bbox[2] - b.bbox[0], a.bbox[3] - a.bbox[1] + b.bbox[3] - b.bbox[1]])
    offset = ca - cb
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * dims, 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    named = (("left", dx < -0.5), ("right", dx > 0.5), ("above", dy < -0.5), ("below", dy > 0.5))
    return {name for name, holds in named if holds}


def _count_failure(groups, found: list[DetectedObject], colour: bool) -> str:
    """Why the objects of the asked shapes differ from the asked ones ("" if they match)."""
    for shape in dict.fromkeys(s for _, s, _ in groups):
        asked = Counter({c: n for c, s, n in groups if s == shape})
        got = Counter(o.colour for o in found if o.shape == shape)
        if sum(got.values()) != sum(asked.values()):
            return f"{sum(got.values())} {shape}(s) found, {sum(asked.values())} asked"
        if colour and got != asked:
            return f"{shape} colours {dict(got)}, asked {dict(asked)}"
    return ""


def _relation_failure(item: GenerationItem, found: list[DetectedObject]) -> str:
    (a,) = (o for o in found if o.kind == item.groups[0][:2])  # the count check made each kind unique
    (b,) = (o for o in found if o.kind == item.groups[1][:2])
    got = geneval_relations(a, b)
    return "" if item.relation in got else f"{item.relation} asked, found {sorted(got) or 'no clear relation'}"


def score_generation(item: GenerationItem, image: torch.Tensor) -> GenerationScore:
    """Whether ``image`` (3, H, W) in [-1, 1] satisfies ``item`` (see the module docstring)."""
    found = read_objects(image)
    kinds = tuple(o.kind for o in found)
    colour = CHECKS_COLOUR.get(item.category, True)
    reason = _count_failure(item.groups, found, colour)
    strict_reason = _count_failure(item.groups, found, True)
    if item.relation is not None and not strict_reason:
        strict_reason = _relation_failure(item, found)
        reason = reason or strict_reason  # position checks colours, so its count check was the strict one
    colours = {colour for colour, _, _ in item.groups}
    asked, in_colour = sum(n for _, _, n in item.groups), sum(colour in colours for colour, _ in kinds)
    return GenerationScore(item.id, item.category, not reason, not strict_reason, kinds, reason, asked, in_colour)


def generation_summary(scores: list[GenerationScore]) -> dict:
    """Per category accuracy (and strict accuracy) over every image and GenEval's overall score: the mean of the
    categories', with the Wilson 95% interval of that mean as a share of all prompts (exact where the categories are
    of one size, as the prompt set's are, and one sample a prompt; with several, still over the prompts, not the
    images, since a prompt's samples are not independent draws of the set); and two diagnostics of failures:
    objects read per picture against objects asked (many more: objects drawn in pieces), and the share of objects
    read in a colour the prompt names (about 1/6 by chance: the caption is not read)."""
    categories = {}
    for category in CATEGORIES:
        mine = [s for s in scores if s.category == category]
        if mine:
            categories[category] = {
                "accuracy": sum(s.correct for s in mine) / len(mine),
                "strict_accuracy": sum(s.strict for s in mine) / len(mine),
                "n": len(mine),
                "prompts": len({s.id for s in mine}),
            }
    mean = lambda key: sum(c[key] for c in categories.values()) / len(categories) if categories else None  # noqa: E731
    found = sum(len(s.found) for s in scores)
    overall, prompts = mean("accuracy"), sum(c["prompts"] for c in categories.values())
    return {
        "overall": overall,
        "overall_ci95": None if overall is None else wilson_interval(round(overall * prompts), prompts),
        "strict_overall": mean("strict_accuracy"),
        "categories": categories,
        "prompts": prompts,
        "samples_per_prompt": len(scores) // prompts if prompts else 0,
        **_prompt_agreement(scores),
        "objects_per_image": found / len(scores) if scores else None,
        "asked_per_image": sum(s.asked for s in scores) / len(scores) if scores else None,
        "asked_colour_share": sum(s.in_asked_colour for s in scores) / found if found else None,
    }


def _prompt_agreement(scores: list[GenerationScore]) -> dict:
    """With several samples a prompt: the share of prompts whose every sample passes, and whose any sample does (a
    prompt the model draws right only sometimes lies between the two)."""
    by_prompt: dict[str, list[bool]] = {}
    for s in scores:
        by_prompt.setdefault(s.id, []).append(s.correct)
    if not by_prompt or all(len(v) == 1 for v in by_prompt.values()):
        return {}
    n = len(by_prompt)
    return {
        "prompts_all_samples_correct": sum(all(v) for v in by_prompt.values()) / n,
        "prompts_any_sample_correct": sum(any(v) for v in by_prompt.values()) / n,
    }


# -- understanding ----------------------------------------------------------------------------------------------

_DIGITS = {word: str(i) for i, word in enumerate(NUMBERS)}
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def normalise_answer(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed, number words as digits ("Three." -> "3")."""
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(_DIGITS.get(w, w) for w in words)


def answer_correct(reply: str, answer: str) -> bool:
    return normalise_answer(reply) == normalise_answer(answer)


def names_another_object(reply: str, answer: str, colours_in_picture: set[str]) -> bool | None:
    """For a colour question answered wrongly: whether the reply is the colour of another object in the picture (the
    model saw the colours but tied the wrong one to the asked shape), or not (it misread). None when right."""
    if answer_correct(reply, answer):
        return None
    return normalise_answer(reply) in {normalise_answer(c) for c in colours_in_picture}


def colour_errors(records: list[tuple[str, bool | None]]) -> dict:
    """``records``: (question kind, names_another_object) per question -> how many colour answers were wrong and how
    many of those named another object's colour."""
    wrong = [other for kind, other in records if kind == "colour" and other is not None]
    return {"wrong": len(wrong), "another_object": sum(wrong)}


def count_answers(records: list[tuple[str, str, str]]) -> dict:
    """``records``: (question kind, true answer, reply) per question -> for the count questions, by true answer (as
    digits, in order) how many were asked and answered right, and how often each reply was given: whether a model
    counts or says the answer the world makes common ("0" or "1": four count answers in five here)."""
    asked: dict[str, list[int]] = {}
    replies: dict[str, int] = {}
    for kind, answer, reply in records:
        if kind != "count":
            continue
        truth, said = normalise_answer(answer), normalise_answer(reply)
        asked.setdefault(truth, [0, 0])
        asked[truth][0] += 1
        asked[truth][1] += truth == said
        replies[said] = replies.get(said, 0) + 1
    by_answer = {a: {"n": n, "correct": c} for a, (n, c) in sorted(asked.items(), key=lambda kv: _count_order(kv[0]))}
    return {"by_answer": by_answer, "replies": dict(sorted(replies.items(), key=lambda kv: (-kv[1], kv[0])))}


def _count_order(answer: str) -> tuple[int, str]:
    return (int(answer), "") if answer.isdigit() else (10**6, answer)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> list[float] | None:
    """The Wilson score interval of a proportion (95% for z = 1.96), [low, high]; None for n = 0. At the sizes these
    sets have (a few dozen items) one item moves an accuracy by several points, and the interval says how far
    apart two runs must be to differ."""
    if n == 0:
        return None
    p, z2 = successes / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def understanding_summary(records: list[tuple[str, bool]]) -> dict:
    """``records``: (question kind, correct) per question -> accuracy overall (with its 95% interval) and per kind."""
    kinds = dict.fromkeys(k for k, _ in records)
    by_kind = {k: sum(ok for kk, ok in records if kk == k) / sum(kk == k for kk, _ in records) for k in kinds}
    right = sum(ok for _, ok in records)
    return {
        "accuracy": right / len(records) if records else None,
        "ci95": wilson_interval(right, len(records)),
        "by_kind": by_kind,
    }


# -- video ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoScore:
    id: str
    present: bool  # the asked object found exactly once in every frame
    direction: str | None  # the way it moved from the first to the last frame (None: not found or not moved)
    correct: bool  # present and moving the asked way
    # Per frame, whether the asked object was found exactly once there: which frames a clip loses (a tokenizer
    # gives back each latent step's last frame best; benchmarks/video_round_trip_frames.py).
    frames_read: tuple[bool, ...] = ()


def score_video(item: VideoItem, clip: torch.Tensor) -> VideoScore:
    """``clip`` (3, F, H, W) in [-1, 1] against ``item``'s object and direction."""
    frames_read = tuple(sum(o.kind == item.kind for o in f) == 1 for f in read_clip(clip))
    present = all(frames_read)
    direction = read_motion(clip[:, [0, -1]], min_shift=MIN_MOVE).get(item.kind)  # only the ends matter
    return VideoScore(item.id, present, direction, present and direction == item.direction, frames_read)


def video_summary(scores: list[VideoScore]) -> dict:
    """Motion accuracy (with its 95% interval), presence in every frame, and per frame index the share of clips
    whose object is found there (``frame_presence``; None unless every clip has the same number of frames)."""
    n = len(scores)
    lengths = {len(s.frames_read) for s in scores}
    per_frame = None
    if len(lengths) == 1 and (frames := lengths.pop()):
        per_frame = [sum(s.frames_read[f] for s in scores) / n for f in range(frames)]
    return {
        "motion_accuracy": sum(s.correct for s in scores) / n if n else None,
        "motion_ci95": wilson_interval(sum(s.correct for s in scores), n),
        "presence": sum(s.present for s in scores) / n if n else None,
        "frame_presence": per_frame,
    }


# -- editing ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditScore:
    id: str
    op: str
    success: bool
    reason: str  # why not; "" on success
    psnr: float | None  # dB outside the edited regions (inf: identical there; None: nothing outside)
    ssim: float | None


_FILL = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5}  # drawn area over the box's


def _near(found: DetectedObject, truth: ShapeObject) -> bool:
    return abs(found.cx - truth.cx) <= PLACE_TOLERANCE and abs(found.cy - truth.cy) <= PLACE_TOLERANCE


def edit_failure(item: EditItem, after: list[DetectedObject]) -> str:
    """Why the objects read from the output (``after``) do not follow the instruction; "" when they do. Places
    and sizes are compared with the source's truth (which reads back within 1.5 px and 5% of area)."""
    e = item.sample
    source, target = e.source.objects, e.target.objects
    if Counter(o.kind for o in after) != Counter(o.kind for o in target):
        return f"found {sorted(o.kind for o in after)}, expected {sorted(o.kind for o in target)}"
    now = {o.kind: o for o in after}  # kinds are unique in edit scenes
    for j, o in enumerate(target):
        if j != e.target_index and not _near(now[o.kind], o):  # unedited: the same in source and target
            return f"the unedited {o.kind} moved"
    if e.op == "remove":
        return ""
    new = now[target[e.target_index].kind]
    if e.op == "add":
        anchor = now[target[1 - e.target_index].kind]
        got = geneval_relations(new, anchor)
        return "" if e.target.relation in got else f"added {sorted(got) or 'nowhere clear'}, not {e.target.relation}"
    old, truth = source[e.source_index], target[e.target_index]
    if e.op == "recolour":
        return "" if _near(new, old) else "the recoloured object moved"
    if e.op == "move":  # any distance the right way: the instruction does not say how far
        dx, dy = new.cx - old.cx, new.cy - old.cy
        horizontal = truth.cx != old.cx
        sign = 1 if (truth.cx - old.cx if horizontal else truth.cy - old.cy) > 0 else -1
        along, across = (sign * dx, abs(dy)) if horizontal else (sign * dy, abs(dx))
        ok = along >= MIN_MOVE and along >= across
        return "" if ok else f"moved by ({dx:+.3f}, {dy:+.3f}), not as {e.instruction!r}"
    h, w = new.image_size
    scale = math.sqrt(new.area / (_FILL[old.shape] * (old.size * min(h, w)) ** 2))  # coverage area: no box rounding
    bigger = truth.size > old.size
    ok = scale >= RESIZE_MARGIN if bigger else scale <= 1 / RESIZE_MARGIN
    return "" if ok else f"scaled by {scale:.2f}, not {'bigger' if bigger else 'smaller'}"


def edit_mask(item: EditItem, after: list[DetectedObject], height: int, width: int) -> torch.Tensor:
    """(H, W) bool: where the edit may change pixels: the edited object's boxes in the source and the target
    (``EditSample.changed_mask``) and in the output (a model may put it elsewhere than the truth did), grown by
    EDIT_MARGIN."""
    e = item.sample
    mask = e.changed_mask(height, width)
    edited = {e.source.objects[e.source_index].kind} if e.source_index is not None else set()
    if e.target_index is not None:
        edited.add(e.target.objects[e.target_index].kind)
    for o in after:
        if o.kind in edited:
            x0, y0, x1, y1 = o.bbox
            mask[y0:y1, x0:x1] = True
    grow = max(1, round(EDIT_MARGIN * min(height, width)))
    m = torch.nn.functional.max_pool2d(mask[None, None].float(), 2 * grow + 1, stride=1, padding=grow)
    return m[0, 0].bool()


def masked_consistency(source: torch.Tensor, output: torch.Tensor, mask: torch.Tensor) -> tuple[float | None, ...]:
    """(PSNR, SSIM) of ``output`` against ``source`` (3, H, W) outside ``mask`` (H, W).

    Both come from :mod:`hydra_x.eval.metrics` on whole images whose masked pixels are made equal (the
    source's): PSNR's squared error is then the outside's, rescaled from all pixels to the outside ones; SSIM's
    windows that lie entirely inside the mask are exactly 1 and are taken out of the mean. Windows straddling
    the mask's edge count with their outside pixels. None where nothing is left outside."""
    keep = ~mask
    outside = int(keep.sum())
    if outside == 0:
        return None, None
    x, y = source[None].double(), torch.where(mask, source, output)[None].double()
    p = float(psnr(x, y)[0]) - 10 * math.log10(mask.numel() / outside)
    h, w = mask.shape
    r = SSIM_RADIUS
    if min(h, w) < 2 * r + 1:
        return p, None
    inside = _windows_inside(mask.numpy(), 2 * r + 1)  # (H - 10, W - 10)
    windows, full = inside.size, int(inside.sum())
    if windows == full:
        return p, None
    s = (float(ssim(x, y)[0]) * windows - full) / (windows - full)
    return p, s


def _windows_inside(mask: np.ndarray, size: int) -> np.ndarray:
    """Per valid window position, whether the ``size`` x ``size`` window lies entirely inside ``mask``."""
    c = np.pad(mask.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    total = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return total == size * size


def score_edit(item: EditItem, output: torch.Tensor) -> EditScore:
    """``output`` (3, H, W) in [-1, 1], the model's edit of ``item``'s source rendered at H x W."""
    h, w = output.shape[-2:]
    source = render_image(item.sample.source, h, w)
    after = read_objects(output)
    reason = edit_failure(item, after)
    p, s = masked_consistency(source, output.float().cpu(), edit_mask(item, after, h, w))
    return EditScore(item.id, item.sample.op, not reason, reason, p, s)


def edit_summary(scores: list[EditScore]) -> dict:
    """Success overall and per op; consistency as means over items (PSNR: identical -> PSNR_CAP dB)."""
    n = len(scores)
    ops = dict.fromkeys(s.op for s in scores)
    psnrs = [min(s.psnr, PSNR_CAP) for s in scores if s.psnr is not None]
    ssims = [s.ssim for s in scores if s.ssim is not None]
    return {
        "success": sum(s.success for s in scores) / n if n else None,
        "success_ci95": wilson_interval(sum(s.success for s in scores), n),
        "by_op": {op: sum(s.success for s in scores if s.op == op) / sum(s.op == op for s in scores) for op in ops},
        "psnr": sum(psnrs) / len(psnrs) if psnrs else None,
        "ssim": sum(ssims) / len(ssims) if ssims else None,
    }
