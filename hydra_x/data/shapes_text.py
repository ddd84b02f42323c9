"""The language side of the shapes world: captions, questions with short exact answers, and edit instructions.

Everything is computed from a scene, so the same functions score a model: read a generated image back into a
scene (:func:`hydra_x.eval.shapes_read.read_scene`) and compare :func:`caption` / :func:`answer_question` on it
with the text that asked for it. Objects are named by colour and shape ("the red circle"); questions and edits
only refer to objects that name picks out uniquely.

Samples (:class:`CaptionSample`, :class:`QuestionSample`, :class:`ClipSample`, :class:`EditSample`) are made by
:class:`ShapesWorld`. Edit samples are split by their source scene (see the held-out rule in
:mod:`hydra_x.data.shapes`); in training, targets hold no held-out combination either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import torch

from hydra_x.data.shapes import (
    COLOURS,
    COUNTS,
    DIRECTIONS,
    GAP,
    RELATIONS,
    SHAPES,
    SIZES,
    STEPS,
    ClipScene,
    Scene,
    SceneWorld,
    ShapeObject,
    in_split,
    pixel_box,
    random_object,
    sample_clip,
    sample_scene,
    scene_ok,
)

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
RELATION_WORDS = {"left": "left of", "right": "right of", "above": "above", "below": "below"}
QUESTION_KINDS = ("colour", "shape", "count", "exists", "position", "motion")
IMAGE_KINDS = QUESTION_KINDS[:-1]  # what can be asked about a still scene
EDIT_OPS = ("recolour", "remove", "add", "move", "resize")
MOVE_WORDS = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
RESIZE = 1.5  # "bigger" / "smaller" scale the size by this factor
MOVE = (0.15, 0.3)  # how far "move" goes (normalised)
SIZE_LIMITS = (0.16, 0.5)  # edits keep sizes readable at 64 px and leave room for the rest

Kind = tuple[str, str]  # (colour, shape)
SceneT = TypeVar("SceneT")


def number_word(n: int) -> str:
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)


def noun(kind: Kind, n: int = 1) -> str:
    """ "a red circle", "an orange square", "two blue squares"."""
    colour, shape = kind
    if n == 1:
        return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape}"
    return f"{number_word(n)} {colour} {shape}s"


def the(kind: Kind) -> str:
    return f"the {kind[0]} {kind[1]}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene | ClipScene) -> str:
    """A deterministic caption: "a red circle", "two blue squares and a red circle",
    "a green triangle left of a yellow circle", "a purple square moving right"."""
    if isinstance(scene, ClipScene):
        return _join([f"{noun(m.start.kind)} moving {m.direction}" for m in scene.objects])
    if scene.kind == "relation":
        a, b = scene.objects
        return f"{noun(a.kind)} {RELATION_WORDS[scene.relation]} {noun(b.kind)}"
    counts = Counter(o.kind for o in scene.objects)  # insertion-ordered: the counted group first
    return _join([noun(kind, n) for kind, n in counts.items()]) if counts else "nothing"


# -- questions --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """A question with its exact short answer and what it is about, so it can be re-answered on any scene:
    ``colour`` / ``shape`` select the subject (None: any), ``other`` the reference object of "position" ones."""

    kind: str
    text: str
    answer: str
    colour: str | None = None
    shape: str | None = None
    other: Kind | None = None
    axis: str | None = None  # "horizontal" | "vertical"


def _objects(scene: Scene | ClipScene) -> tuple[ShapeObject, ...]:
    return scene.at(0.0).objects if isinstance(scene, ClipScene) else scene.objects


def _match(objects, colour: str | None, shape: str | None) -> list:
    return [o for o in objects if colour in (None, o.colour) and shape in (None, o.shape)]


def _unique(objects, colour: str | None, shape: str | None):
    found = _match(objects, colour, shape)
    return found[0] if len(found) == 1 else None


def answer_question(question: Question, scene: Scene | ClipScene) -> str | None:
    """The answer on ``scene`` (or on objects read back from an image), None when the question does not apply
    there (its subject is missing or not unique). Objects need ``colour``, ``shape``, ``cx``, ``cy``."""
    q, objects = question, _objects(scene)
    if q.kind == "count":
        return number_word(len(_match(objects, q.colour, q.shape)))
    if q.kind == "exists":
        return "yes" if _match(objects, q.colour, q.shape) else "no"
    if q.kind == "motion":
        if not isinstance(scene, ClipScene):
            return None
        moving = [m for m in scene.objects if m.start.kind == (q.colour, q.shape)]
        return moving[0].direction if len(moving) == 1 else None
    subject = _unique(objects, q.colour, q.shape)
    if subject is None:
        return None
    if q.kind == "colour":
        return subject.colour
    if q.kind == "shape":
        return subject.shape
    if q.kind == "position":
        ref = _unique(objects, *q.other)
        if ref is None:
            return None
        if q.axis == "horizontal":
            return "left" if subject.cx < ref.cx else "right"
        return "above" if subject.cy < ref.cy else "below"
    raise ValueError(f"unknown question kind {q.kind!r}; expected one of {QUESTION_KINDS}")


def _apart(a: ShapeObject, b: ShapeObject, axis: str) -> bool:
    """Far enough apart along ``axis`` that the answer survives reading back (boxes disjoint along it)."""
    d = abs(a.cx - b.cx) if axis == "horizontal" else abs(a.cy - b.cy)
    return d >= (a.size + b.size) / 2 + GAP / 2


def questions(scene: Scene | ClipScene) -> list[Question]:
    """Every question this module asks about ``scene``, in a fixed order, with answers."""
    objects = _objects(scene)
    kinds = list(dict.fromkeys(o.kind for o in objects))
    qs: list[Question] = []
    if isinstance(scene, ClipScene):
        for m in scene.objects:
            qs.append(Question("motion", f"Which way is {the(m.start.kind)} moving?", m.direction, *m.start.kind))
        return qs
    for shape in SHAPES:
        if (o := _unique(objects, None, shape)) is not None:
            qs.append(Question("colour", f"What colour is the {shape}?", o.colour, shape=shape))
        n = number_word(len(_match(objects, None, shape)))
        qs.append(Question("count", f"How many {shape}s are there?", n, shape=shape))
    for colour in COLOURS:
        if (o := _unique(objects, colour, None)) is not None:
            qs.append(Question("shape", f"What shape is the {colour} object?", o.shape, colour=colour))
    for colour, shape in kinds:
        n = len(_match(objects, colour, shape))
        qs.append(Question("count", f"How many {colour} {shape}s are there?", number_word(n), colour, shape))
    for colour in COLOURS:
        for shape in SHAPES:
            yes = (colour, shape) in kinds
            qs.append(Question("exists", f"Is there {noun((colour, shape))}?", "yes" if yes else "no", colour, shape))
    unique = [o for o in objects if len(_match(objects, *o.kind)) == 1]
    for a in unique:
        for b in unique:
            for axis, words in (("horizontal", "left or right of"), ("vertical", "above or below")):
                if a is not b and _apart(a, b, axis):
                    q = Question("position", f"Is {the(a.kind)} {words} {the(b.kind)}?", "", *a.kind, b.kind, axis)
                    qs.append(replace(q, answer=answer_question(q, scene)))
    return qs


def pick_question(rng: np.random.Generator, qs: list[Question]) -> Question:
    """A question kind uniformly among those of ``qs`` (so "exists" does not dominate), then a question of it."""
    kinds = sorted({q.kind for q in qs}, key=QUESTION_KINDS.index)
    kind = kinds[int(rng.integers(len(kinds)))]
    of_kind = [q for q in qs if q.kind == kind]
    return of_kind[int(rng.integers(len(of_kind)))]


# Every answer a question kind can have in this world (counts: up to four of a kind and one more of its shape).
ANSWERS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "count": NUMBERS[: max(COUNTS) + 2],
    "exists": ("yes", "no"),
    "position": ("left", "right", "above", "below"),
    "motion": DIRECTIONS,
}
BALANCE_TRIES = 64  # scenes drawn for a chosen answer before the last one's question is taken as it comes


def balanced_question(
    rng: np.random.Generator,
    draw: Callable[[], SceneT],
    ask: Callable[[SceneT], list[Question]],
    kinds: tuple[str, ...],
) -> tuple[SceneT, Question]:
    """A scene and a question about it whose answer is balanced: a kind uniformly among ``kinds``, an answer
    uniformly among the kind's ANSWERS, then scenes from ``draw`` until one has such a question (``ask``: its
    questions), so that answers this world makes common ("zero" or "one" of a shape: four count answers in five;
    "no" to "is there ...?") are no better a guess than the rest, as VQA v2 and GQA balance theirs. After
    BALANCE_TRIES scenes without one (an answer a rare scene gives), the last scene's question as
    :func:`pick_question` draws it."""
    kind = kinds[int(rng.integers(len(kinds)))]
    answer = ANSWERS[kind][int(rng.integers(len(ANSWERS[kind])))]
    for _ in range(BALANCE_TRIES):
        scene = draw()
        asked = ask(scene)
        matching = [q for q in asked if q.kind == kind and q.answer == answer]
        if matching:
            return scene, matching[int(rng.integers(len(matching)))]
    return scene, pick_question(rng, asked)


# -- samples ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionSample:
    """A scene and its caption; render the scene at the size the caller trains at."""

    scene: Scene
    caption: str


@dataclass(frozen=True)
class QuestionSample:
    scene: Scene
    question: Question


@dataclass(frozen=True)
class ClipSample:
    clip: ClipScene
    caption: str
    question: Question  # which way one of the objects moves


@dataclass(frozen=True)
class EditSample:
    """``instruction`` turns ``source`` into ``target``; only the object at ``source_index`` (None for "add")
    becomes the one at ``target_index`` (None for "remove"), everything else is unchanged."""

    source: Scene
    target: Scene
    instruction: str
    op: str
    source_index: int | None
    target_index: int | None

    def changed_mask(self, height: int, width: int) -> torch.Tensor:
        """(H, W) bool: True where renders of source and target may differ (the edited object's pixel boxes)."""
        mask = torch.zeros(height, width, dtype=torch.bool)
        for scene, i in ((self.source, self.source_index), (self.target, self.target_index)):
            if i is not None:
                x0, y0, x1, y1 = pixel_box(scene.objects[i], height, width)
                mask[y0:y1, x0:x1] = True
        return mask


def caption_sample(world: SceneWorld, k: int) -> CaptionSample:
    scene = sample_scene(world.rng("caption", k), world.split)
    return CaptionSample(scene, caption(scene))


def question_sample(world: SceneWorld, k: int, balanced_answers: bool = False) -> QuestionSample:
    """A scene and a question about it; ``balanced_answers``: the answer first (:func:`balanced_question`)."""
    rng = world.rng("question", k)
    if balanced_answers:
        return QuestionSample(*balanced_question(rng, lambda: sample_scene(rng, world.split), questions, IMAGE_KINDS))
    scene = sample_scene(rng, world.split)
    return QuestionSample(scene, pick_question(rng, questions(scene)))


def clip_sample(world: SceneWorld, k: int) -> ClipSample:
    rng = world.rng("clip_sample", k)
    clip = sample_clip(rng, world.split)
    return ClipSample(clip, caption(clip), pick_question(rng, questions(clip)))


# -- edits ------------------------------------------------------------------------------------------------------


def check_edit_ops(ops: tuple[str, ...]) -> None:
    """ValueError naming what is wrong unless ``ops`` is a non-empty tuple of distinct edit ops."""
    if not isinstance(ops, tuple) or not ops:
        raise ValueError(f"edit ops must be a non-empty tuple of {EDIT_OPS}, got {ops!r}")
    unknown = [op for op in ops if op not in EDIT_OPS]
    if unknown or len(set(ops)) != len(ops):
        raise ValueError(f"edit ops must be distinct ones of {EDIT_OPS}, got {list(ops)}")


def _edit(rng: np.random.Generator, source: Scene, op: str) -> EditSample | None:
    """One random edit of kind ``op`` on ``source``; None when the drawn one does not fit (caller retries)."""
    objs = source.objects
    i = int(rng.integers(len(objs)))
    obj, others = objs[i], objs[:i] + objs[i + 1 :]
    taken = {o.kind for o in others}
    if op == "recolour":
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        if colour == obj.colour or (colour, obj.shape) in taken:
            return None
        target = replace(source, objects=objs[:i] + (replace(obj, colour=colour),) + objs[i + 1 :])
        return EditSample(source, target, f"make {the(obj.kind)} {colour}", op, i, i)
    if op == "remove":
        if len(objs) != 2:
            return None
        return EditSample(source, Scene(others, "single"), f"remove {the(obj.kind)}", op, i, None)
    if op == "add":
        return _add(rng, source) if len(objs) == 1 else None
    if op == "move":
        direction = list(MOVE_WORDS)[int(rng.integers(len(MOVE_WORDS)))]
        step = MOVE[0] + (MOVE[1] - MOVE[0]) * rng.random()
        dx, dy = STEPS[direction]
        moved = replace(obj, cx=obj.cx + dx * step, cy=obj.cy + dy * step)
        instruction = f"move {the(obj.kind)} {MOVE_WORDS[direction]}"
    elif op == "resize":
        bigger = bool(rng.random() < 0.5)
        moved = replace(obj, size=min(1.0, obj.size * (RESIZE if bigger else 1 / RESIZE)))
        if not SIZE_LIMITS[0] <= moved.size <= SIZE_LIMITS[1]:
            return None
        instruction = f"make {the(obj.kind)} {'bigger' if bigger else 'smaller'}"
    else:
        raise ValueError(f"unknown edit op {op!r}; expected one of {EDIT_OPS}")
    target = replace(source, objects=objs[:i] + (moved,) + objs[i + 1 :])
    return EditSample(source, target, instruction, op, i, i) if scene_ok(target) else None


def _add(rng: np.random.Generator, source: Scene) -> EditSample | None:
    """A new object in a random relation to the only one: placement by rejection (room is usually plentiful)."""
    (obj,) = source.objects
    kind = list(COLOURS)[int(rng.integers(len(COLOURS)))], SHAPES[int(rng.integers(len(SHAPES)))]
    rel = RELATIONS[int(rng.integers(len(RELATIONS)))]
    if kind == obj.kind:
        return None
    for _ in range(100):
        target = Scene((random_object(rng, kind, SIZES["relation"]), obj), "relation", rel)
        if scene_ok(target):
            where = {"left": "to the left of", "right": "to the right of"}.get(rel, rel)
            return EditSample(source, target, f"add {noun(kind)} {where} {the(obj.kind)}", "add", None, 0)
    return None


def edit_sample(world: SceneWorld, k: int, ops: tuple[str, ...] = EDIT_OPS) -> EditSample:
    """One edit, its op drawn uniformly from ``ops``, of a single-object ("add") or two-object ("remove") source
    scene, or either (the rest); a source that leaves the drawn edit no room is redrawn. ``ops`` is checked where
    it is configured (``check_edit_ops``: the data source, ``ShapesTasks``), not once per sample."""
    rng = world.rng("edit", k)
    op = ops[int(rng.integers(len(ops)))]
    while True:
        kind = {"add": "single", "remove": "relation"}.get(op) or ("single" if rng.random() < 0.4 else "relation")
        source = sample_scene(rng, world.split, kind)
        for _ in range(20):
            edit = _edit(rng, source, op)
            if edit is not None and (world.split == "heldout" or in_split(edit.target, "train")):
                return edit


class ShapesWorld(SceneWorld):
    """The shapes world with its language: the k-th caption, question, clip and edit sample of a (seed, split)."""

    def caption_sample(self, k: int) -> CaptionSample:
        return caption_sample(self, k)

    def question_sample(self, k: int, balanced_answers: bool = False) -> QuestionSample:
        return question_sample(self, k, balanced_answers)

    def clip_sample(self, k: int) -> ClipSample:
        return clip_sample(self, k)

    def edit_sample(self, k: int, ops: tuple[str, ...] = EDIT_OPS) -> EditSample:
        return edit_sample(self, k, ops)
